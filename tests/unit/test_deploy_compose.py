"""The container image and the compose deployment, checked without a container engine.

`docker-compose config` (Debian's docker-compose package) validates the file against the compose
schema and resolves it; every service's command must parse in the costline CLI; every COSTLINE_*
variable it sets must be a real setting; the mounted config files must load. The helpers here are
shared with test_deploy_k8s.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from costline.cli import app
from costline.schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
BUNDLED_RATECARD = ROOT / "pipeline" / "ratecard" / "default.yaml"
#: The long-running commands and the health-check component each one is probed as.
SERVER_COMMANDS = {("worker",): "worker", ("api", "serve"): "api", ("collector",): "collector"}
SERVER_COMMANDS[("dashboard",)] = "dashboard"

COMPOSE_INSTALL_HINT = "install Debian's docker-compose (apt-get install -y docker-compose)"


class NotACommand(Exception):
    """The arguments do not name a costline command, or that command refuses them."""


def resolve_command(args: list[str]) -> tuple[list[str], Any]:
    """Walk `args` down the costline CLI and parse the rest with the command found.

    Typer may bring its own copy of click, so the command tree is walked by duck typing and any parse
    error becomes `NotACommand`.
    """
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "list_commands") and rest and not rest[0].startswith("-"):
        sub = command.get_command(command.context_class(command), rest[0])
        if sub is None:
            raise NotACommand(f"`costline {' '.join([*path, rest[0]])}` is not a costline command")
        path.append(rest.pop(0))
        command = sub
    if hasattr(command, "list_commands"):
        raise NotACommand(f"`costline {' '.join(path)}` needs a subcommand")
    try:
        context = command.make_context(" ".join(["costline", *path]), rest)
    except Exception as exc:  # the (possibly vendored) click's UsageError / BadParameter
        raise NotACommand(f"`costline {' '.join(args)}`: {exc}") from exc
    return path, context


def server_component(args: list[str]) -> str | None:
    """The health-check component of a container's command, None for one-shot commands."""
    path, _ = resolve_command(args)
    return SERVER_COMMANDS.get(tuple(path))


def setting_names() -> set[str]:
    return {f"COSTLINE_{name.upper()}" for name in Settings.model_fields}


def unknown_settings(names: Iterable[str]) -> set[str]:
    """The COSTLINE_* names that are not settings (a typo there is silently ignored at run time)."""
    return {name for name in names if name.startswith("COSTLINE_")} - setting_names()


def compose() -> dict[str, Any]:
    """compose.yaml as YAML sees it (anchors and merge keys resolved)."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return document


def costline_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if str(service.get("image", "")).startswith("${COSTLINE_IMAGE")
    }


def _compose_copy(tmp_path: Path, env: str | None) -> Path:
    target = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, target, ignore=shutil.ignore_patterns(".env"))
    if env is not None:
        (target / ".env").write_text(env, encoding="utf-8")
    return target


def _run_config(folder: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(f"docker-compose is not installed; {COMPOSE_INSTALL_HINT}")
    return subprocess.run(
        [binary, "-f", str(folder / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
        check=False,
    )


def test_compose_file_validates_and_resolves_with_docker_compose(tmp_path: Path) -> None:
    example = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")
    env = example.replace("CLICKHOUSE_PASSWORD=\n", "CLICKHOUSE_PASSWORD=0123abcd\n")
    result = _run_config(_compose_copy(tmp_path, env))
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {
        "kafka",
        "clickhouse",
        "init",
        "worker",
        "api",
        "collector",
        "dashboard",
    }
    dsn = resolved["services"]["worker"]["environment"]["COSTLINE_CLICKHOUSE_DSN"]
    assert dsn == "http://costline:0123abcd@clickhouse:8123/costline"
    assert resolved["services"]["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"] == "0123abcd"
    assert resolved["services"]["worker"]["deploy"]["replicas"] >= 2
    assert set(resolved["volumes"]) >= {"kafka-data", "clickhouse-data", "collector-spool"}


def test_compose_refuses_to_start_without_the_clickhouse_password(tmp_path: Path) -> None:
    example = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")
    result = _run_config(_compose_copy(tmp_path, example))  # the example leaves it empty
    assert result.returncode != 0
    assert "set CLICKHOUSE_PASSWORD in deploy/compose/.env" in result.stderr


def test_every_compose_command_is_a_costline_command_with_valid_options() -> None:
    services = costline_services()
    assert set(services) == {"init", "worker", "api", "collector", "dashboard"}
    for name, service in services.items():
        path, _ = resolve_command(service["command"])
        assert path, name
    assert services["init"]["command"][0] == "init"


def test_the_cli_check_itself_rejects_what_costline_would_reject() -> None:
    with pytest.raises(NotACommand):
        resolve_command(["wroker"])
    with pytest.raises(NotACommand):
        resolve_command(["collector", "--hots", "0.0.0.0"])
    with pytest.raises(NotACommand):
        resolve_command(["ratecard"])


def test_every_variable_compose_sets_is_a_costline_setting() -> None:
    names: set[str] = set()
    for service in costline_services().values():
        names.update(service.get("environment", {}))
    example = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")
    in_example = set(re.findall(r"^#?\s*(COSTLINE_[A-Z0-9_]+)=", example, re.M))
    publish_only = {"COSTLINE_IMAGE", "COSTLINE_API_PUBLISH", "COSTLINE_COLLECTOR_PUBLISH"}
    publish_only.add("COSTLINE_DASHBOARD_PUBLISH")
    assert len(names) >= 8
    assert unknown_settings(names) == set()
    assert unknown_settings(in_example - publish_only) == set()
    # compose-only variables must not collide with settings (they would silently configure costline)
    assert publish_only & setting_names() == set()
    assert publish_only <= in_example


def test_every_long_running_service_has_the_health_check_of_its_command() -> None:
    services = compose()["services"]
    for name, service in costline_services().items():
        component = server_component(service["command"])
        if component is None:
            assert "healthcheck" not in service, name
            continue
        assert service["healthcheck"]["test"] == ["CMD", "costline", "healthcheck", component], name
        resolve_command(service["healthcheck"]["test"][1:][1:])
    for dependency in ("kafka", "clickhouse"):
        assert services[dependency]["healthcheck"]["test"], dependency


def test_services_start_in_order_init_first() -> None:
    services = compose()["services"]
    assert services["init"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "clickhouse": {"condition": "service_healthy"},
    }
    assert services["init"]["restart"] == "no"
    for name in ("worker", "api", "collector"):
        assert services[name]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert services["dashboard"]["environment"]["COSTLINE_API_URL"] == "http://api:8787"


def test_kafka_runs_in_kraft_mode_with_the_official_image() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(kafka["environment"]).upper()
    costline_env = costline_services()["worker"]["environment"]
    assert costline_env["COSTLINE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_no_secret_is_committed() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "${CLICKHOUSE_PASSWORD:?" in text
    pairs = re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|TOKEN|WEBHOOK)[A-Z_]*):\s*(\S.*)$", text, re.M)
    values = [value for key, value in pairs if not key.endswith("_PATH")]
    assert values, "compose.yaml sets the ClickHouse password"
    for value in values:
        assert value.strip("'\"").startswith("${"), f"a literal secret in compose.yaml: {value}"
    assert ".env" in (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").split()
    example = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8")
    for line in example.splitlines():
        if line and not line.startswith("#"):
            assert line.endswith("="), f"the example gives a value: {line}"
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    assert "deploy/compose/.env" not in tracked


def test_mounted_config_files_load(tmp_path: Path) -> None:
    from costline.dashboard.api.auth import TokenStore
    from costline.pipeline.budgets.config import load_budgets
    from costline.pipeline.ratecard.validate import has_errors, validate_rate_card

    config = COMPOSE_DIR / "config"
    worker_env = costline_services()["worker"]["environment"]
    for setting, file in (
        ("COSTLINE_RATECARD_PATH", "ratecard.yaml"),
        ("COSTLINE_BUDGETS_PATH", "budgets.yaml"),
        ("COSTLINE_API_TOKENS_PATH", "api_tokens.yaml"),
    ):
        assert worker_env[setting] == f"/etc/costline/{file}"
    assert (config / "ratecard.yaml").read_bytes() == BUNDLED_RATECARD.read_bytes(), (
        "deploy/compose/config/ratecard.yaml ships the bundled card: copy pipeline/ratecard/default.yaml"
    )
    assert not has_errors(validate_rate_card(config / "ratecard.yaml"))
    assert load_budgets(config / "budgets.yaml").budgets
    assert len(TokenStore.from_file(config / "api_tokens.example.yaml")) == 0


# ---------------------------------------------------------------------------------------- image


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def test_image_runs_costline_as_a_non_root_user_with_a_health_check() -> None:
    text = _dockerfile()
    final_stage = text[text.rindex("\nFROM ") :]
    user = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    assert user
    assert user[-1].split(":")[0] not in ("0", "root")
    assert user[-1].split(":")[0].isdigit(), "a numeric user, so runAsNonRoot can check it"
    assert 'ENTRYPOINT ["costline"]' in final_stage
    cmd = re.search(r"^CMD\s+(\[.*\])$", final_stage, re.M)
    assert cmd is not None
    resolve_command(yaml.safe_load(cmd.group(1)))
    health = re.search(r"^HEALTHCHECK .* CMD\s+(\[.*\])$", final_stage, re.M)
    assert health is not None
    assert yaml.safe_load(health.group(1))[:2] == ["costline", "healthcheck"]
    assert re.search(r"^FROM python:3\.11-slim|PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert 'pip install ".[server]"' in text


def test_image_copies_every_package_folder_and_the_build_context_keeps_them() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(config["tool"]["setuptools"]["package-dir"].values())
    copied = {
        source.rstrip("/")
        for line in re.findall(r"^COPY\s+(?!--from)(.+)$", _dockerfile(), re.M)
        for source in line.split()[:-1]
    }
    assert folders <= copied, f"deploy/Dockerfile must COPY {sorted(folders - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[ignore.index("*") :].count("*") == 1
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert copied <= kept, f".dockerignore leaves out {sorted(copied - kept)}"
