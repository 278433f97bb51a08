"""`costline api`: serve the read API on its own, manage its tokens, print its OpenAPI spec.

In embedded mode the worker serves the API (it owns the chDB store); `costline api serve` is for
a ClickHouse server. Tokens are shown once and stored only as SHA-256 hashes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from costline.schemas.errors import CostlineError
from costline.schemas.settings import Settings

api_app = typer.Typer(
    no_args_is_help=True, help="The read API: serve it standalone, manage its tokens, print its OpenAPI spec."
)
token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of the read API (stored hashed).")
api_app.add_typer(token_app, name="token")

#: Exit status for a usage or configuration error.
EXIT_ERROR = 2

TokensFile = Annotated[
    Path | None,
    typer.Option(
        "--file", help="Tokens YAML (default: COSTLINE_API_TOKENS_PATH or api_tokens.yaml in the data dir)."
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


@api_app.command("serve")
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Listen address (default: COSTLINE_API_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default: COSTLINE_API_PORT).")] = None,
) -> None:
    """Serve the read API against COSTLINE_CLICKHOUSE_DSN until interrupted.

    With the embedded store the worker already serves it (chDB lets one process open a store):
    a chdb:// DSN that a running worker owns is refused.
    """
    from costline.dashboard.api.server import serve_standalone

    settings = Settings()
    overrides = {key: value for key, value in (("api_host", host), ("api_port", port)) if value is not None}
    try:
        serve_standalone(settings.model_copy(update=overrides))
    except CostlineError as exc:
        raise _fail(str(exc)) from exc


@api_app.command("openapi")
def openapi() -> None:
    """Print the OpenAPI spec (JSON) of every endpoint; `docs/openapi.json` is this output."""
    from costline.dashboard.api.app import openapi_document

    typer.echo(json.dumps(openapi_document(), indent=2))


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A name for the token (unique in the file).")],
    role: Annotated[str, typer.Option("--role", help="admin, finance or team.")],
    team: Annotated[
        list[str] | None, typer.Option("--team", help="A team a team token may read (repeat for several).")
    ] = None,
    file: TokensFile = None,
) -> None:
    """Create a token, store its hash and print the token (it is shown only this once)."""
    from costline.dashboard.api.auth import ROLES, add_token

    if role not in ROLES:
        raise _fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    if role != "team" and team:
        raise _fail(f"a {role} token reads every team; --team is only for --role team")
    path = file or Settings().resolved_api_tokens_path()
    try:
        token = add_token(path, name, role, team or ())  # type: ignore[arg-type]  # checked against ROLES above
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(token)
    typer.echo(
        f"stored the hash of token {name!r} ({role}) in {path}; the token is not shown again", err=True
    )


@token_app.command("list")
def token_list(file: TokensFile = None) -> None:
    """List the tokens of the file: name, role and teams (tokens themselves are never stored)."""
    import yaml

    from costline.dashboard.api.auth import TokenStore

    path = file or Settings().resolved_api_tokens_path()
    try:
        TokenStore.from_file(path)  # refuse a broken file with its precise error
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    if not path.exists():
        typer.echo(f"no tokens file at {path}; create a token with `costline api token create`", err=True)
        return
    entries = (yaml.safe_load(path.read_text()) or {}).get("tokens") or []
    for entry in entries:
        teams = ",".join(entry.get("teams") or []) or "*"
        typer.echo(f"{entry['name']}\t{entry['role']}\t{teams}")
