"""The budgets file (`COSTLINE_BUDGETS_PATH`): budgets per scope and period, and which anomalies alert.

The reader is strict because a budget is money and an alert is a promise:

* every problem is reported as ``FILE:LINE: budgets[2].time_zone: message``, all of them at once;
* amounts are exact: ``amount_usd: 1500.50`` is read from its text as ``Decimal("1500.50")``, never
  through a binary float; quoted strings (``"1500.50"``) work too;
* ``yes``/``no``/``on``/``off`` stay strings (YAML 1.1 would turn them into booleans);
* a key given twice in one mapping is an error (YAML would silently keep the last one).

See docs/budgets.md for the format and docs/budgets.example.yaml for a full example.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from costline.pipeline.ratecard.load import Loc, Problem, SourceMap, format_loc, parse_yaml_lines
from costline.schemas.errors import ConfigError

PeriodKind = Literal["daily", "weekly", "monthly"]
RouteName = Literal["slack", "webhook"]
AnomalyKind = Literal["overthinking", "cache_miss", "spend_spike", "context_growth", "agent_loop"]
Severity = Literal["info", "warning", "critical"]

ROUTES: tuple[RouteName, ...] = get_args(RouteName)
ANOMALY_KINDS: tuple[AnomalyKind, ...] = get_args(AnomalyKind)
#: Severities from least to most severe.
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 80, 100)
#: Largest budget amount accepted (it must fit Decimal(38, 12) with room to spare).
MAX_AMOUNT = Decimal(10) ** 12

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_SCOPE_VALUE = r"^\S(.{0,126}\S)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetScope(_Strict):
    """Which usage a budget counts: every given field must match; none given means all usage."""

    team: Annotated[str, Field(pattern=_SCOPE_VALUE)] | None = None
    workload: Annotated[str, Field(pattern=_SCOPE_VALUE)] | None = None
    project: Annotated[str, Field(pattern=_SCOPE_VALUE)] | None = None

    def describe(self) -> str:
        """`team search, workload rag`, or `all usage`."""
        parts = [f"{name} {value}" for name, value in self.items()]
        return ", ".join(parts) if parts else "all usage"

    def items(self) -> list[tuple[str, str]]:
        """The (column, value) pairs that are set, in a fixed order."""
        return [(name, value) for name in ("team", "workload", "project") if (value := getattr(self, name))]


class Budget(_Strict):
    """One budget: an amount of USD per period for a scope, with thresholds and routes."""

    name: str
    scope: BudgetScope = Field(default_factory=BudgetScope)
    period: PeriodKind
    time_zone: str = "UTC"
    amount_usd: Decimal
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    forecast: bool = True
    forecast_min_elapsed_percent: Annotated[int, Field(ge=0, le=100)] = 10
    notify: tuple[RouteName, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "a budget name is 1-128 letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as UTC, Europe/Paris or America/New_York"
            ) from exc
        return value

    @field_validator("amount_usd", mode="before")
    @classmethod
    def _amount_type(cls, value: Any) -> Any:
        if isinstance(value, float):  # only reachable from Python callers; the YAML reader gives Decimals
            raise ValueError("amount_usd must be exact: give a string or a Decimal, not a float")
        return value

    @field_validator("amount_usd")
    @classmethod
    def _amount(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value <= 0:
            raise ValueError("amount_usd must be a positive number of USD")
        if value >= MAX_AMOUNT:
            raise ValueError(f"amount_usd must be below {MAX_AMOUNT:,} USD")
        if value != value.quantize(Decimal("1e-6")):
            raise ValueError("amount_usd has more than 6 decimals; budgets are set to the micro-dollar")
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give at least one threshold percent, e.g. [50, 80, 100]")
        for percent in value:
            if not 1 <= percent <= 1000:
                raise ValueError(f"threshold {percent}% is out of range; use percents from 1 to 1000")
        if len(set(value)) != len(value):
            raise ValueError("a threshold percent is listed twice; list each once")
        return tuple(sorted(value))

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: tuple[RouteName, ...]) -> tuple[RouteName, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a route is listed twice; list each once")
        return value


class AnomalyAlerts(_Strict):
    """Which detected anomalies become alerts, and where they go."""

    kinds: tuple[AnomalyKind, ...] = ANOMALY_KINDS
    causes: tuple[str, ...] = Field(
        (), description="Only anomalies with one of these causes; empty means every cause."
    )
    min_wasted_usd: Decimal = Decimal(0)
    min_severity: Severity = "warning"
    teams: tuple[str, ...] = Field((), description="Only these teams; empty means every team.")
    notify: tuple[RouteName, ...] = ()

    @field_validator("min_wasted_usd", mode="before")
    @classmethod
    def _wasted_type(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError("min_wasted_usd must be exact: give a string or a Decimal, not a float")
        return value

    @field_validator("min_wasted_usd")
    @classmethod
    def _wasted(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0 or value >= MAX_AMOUNT:
            raise ValueError("min_wasted_usd must be a USD amount of zero or more")
        return value

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: tuple[AnomalyKind, ...]) -> tuple[AnomalyKind, ...]:
        if not value:
            raise ValueError(f"give at least one kind: {', '.join(ANOMALY_KINDS)}")
        return value

    def severity_allowed(self, severity: str) -> bool:
        """Whether an anomaly of `severity` is at or above `min_severity`."""
        return severity in SEVERITIES and SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)


class BudgetsConfig(_Strict):
    """The whole file."""

    budgets: tuple[Budget, ...] = ()
    anomaly_alerts: AnomalyAlerts | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> BudgetsConfig:
        names = [budget.name for budget in self.budgets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"budget name(s) {', '.join(duplicates)} are used twice; names must be unique")
        return self

    def budget(self, name: str) -> Budget | None:
        """The budget called `name`, if any."""
        return next((budget for budget in self.budgets if budget.name == name), None)

    def routes_in_use(self) -> set[str]:
        """Every route some budget or the anomaly rule notifies."""
        routes: set[str] = {route for budget in self.budgets for route in budget.notify}
        if self.anomaly_alerts is not None:
            routes.update(self.anomaly_alerts.notify)
        return routes

    @property
    def empty(self) -> bool:
        """No budget and no anomaly alerting: nothing for the alert engine to do."""
        return not self.budgets and self.anomaly_alerts is None


# --- YAML reading -----------------------------------------------------------------------------

_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _BudgetLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2-like scalars, and decimals read from their text."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012


_BudgetLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_BudgetLoader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?[0-9][0-9_]*$"), list("-+0123456789"))
_BudgetLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)
_BudgetLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    return int(str(loader.construct_scalar(node)).replace("_", ""))  # decimal, never octal


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    return Decimal(str(loader.construct_scalar(node)).replace("_", ""))


_BudgetLoader.add_constructor(_INT_TAG, _construct_int)
_BudgetLoader.add_constructor(_FLOAT_TAG, _construct_decimal)


def _message(error: Any) -> str:
    kind = error.get("type", "")
    loc = error.get("loc", ())
    if kind == "extra_forbidden":
        return f"unknown field {loc[-1]!r}: check its spelling against docs/budgets.md"
    if kind == "missing":
        return f"missing required field {loc[-1]!r}"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        message = f"{message} (got {value!r})"
    return message


def _problems(exc: ValidationError, file: str, source: SourceMap) -> list[Problem]:
    problems = []
    for error in exc.errors():
        # Literal-in-tuple errors carry the member index as the last part; keep it, it names the item.
        loc: Loc = tuple(error.get("loc", ()))
        problems.append(Problem(file, source.line_of(loc), format_loc(loc), _message(error)))
    return problems


def _duplicate_names(data: dict[str, Any], file: str, source: SourceMap) -> list[Problem]:
    """Checked on the raw data so it shows even when another field is wrong too."""
    budgets = data.get("budgets")
    if not isinstance(budgets, list):
        return []
    first: dict[str, int | None] = {}
    problems = []
    for i, budget in enumerate(budgets):
        name = budget.get("name") if isinstance(budget, dict) else None
        if not isinstance(name, str):
            continue
        loc: Loc = ("budgets", i, "name")
        if name in first:
            problems.append(
                Problem(
                    file,
                    source.line_of(loc),
                    format_loc(loc),
                    f"budget name {name!r} is used twice (first on line {first[name]}); names must be unique",
                )
            )
        else:
            first[name] = source.line_of(loc)
    return problems


@dataclass(frozen=True)
class ParsedBudgets:
    """A budgets file read from text: the config when valid, and every problem found."""

    file: str
    config: BudgetsConfig | None
    problems: list[Problem]


def parse_budgets_text(text: str, filename: str = "<string>") -> ParsedBudgets:
    """Parse a budgets document, collecting every problem instead of stopping at the first."""
    data, source, problems = parse_yaml_lines(text, filename, _BudgetLoader, bare_floats=True)
    if data is None and problems:
        return ParsedBudgets(filename, None, problems)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(
            Problem(filename, source.line_of(()) or 1, "", "a budgets file is a mapping with `budgets:`")
        )
        return ParsedBudgets(filename, None, problems)
    duplicates = _duplicate_names(data, filename, source)
    problems.extend(duplicates)
    config = None
    try:
        config = BudgetsConfig.model_validate(data)
    except ValidationError as exc:
        reported = {p.path for p in problems}
        for problem in _problems(exc, filename, source):
            if problem.path in reported or (duplicates and "used twice" in problem.message):
                continue
            problems.append(problem)
    problems.sort(key=lambda p: (p.line or 0, p.path))
    return ParsedBudgets(filename, None if problems else config, problems)


def budgets_from_text(text: str, filename: str = "<string>") -> BudgetsConfig:
    """A config from YAML text; ConfigError lists every problem as FILE:LINE: path: message."""
    parsed = parse_budgets_text(text, filename)
    if parsed.config is None:
        listed = "\n".join(p.format(with_severity=False) for p in parsed.problems)
        raise ConfigError(
            f"budgets file {filename} has {len(parsed.problems)} problem(s); "
            f"fix them and start again:\n{listed}"
        )
    return parsed.config


def load_budgets(path: Path) -> BudgetsConfig:
    """Read the budgets file at `path` (COSTLINE_BUDGETS_PATH)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"budgets file {path} does not exist; fix COSTLINE_BUDGETS_PATH") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"budgets file {path} is not UTF-8 text; save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"budgets file {path} cannot be read: {exc.strerror}") from exc
    return budgets_from_text(text, str(path))


def load_optional_budgets(path: Path | None) -> BudgetsConfig:
    """The file's config, or an empty config when no file is set."""
    return BudgetsConfig() if path is None else load_budgets(path)


def check_routes(config: BudgetsConfig, configured: Iterable[str]) -> None:
    """ConfigError when a budget or the anomaly rule names a route that has no URL set."""
    missing = sorted(config.routes_in_use() - set(configured))
    if missing:
        settings = {"slack": "COSTLINE_SLACK_WEBHOOK_URL", "webhook": "COSTLINE_ALERT_WEBHOOK_URL"}
        needed = ", ".join(f"{route} needs {settings[route]}" for route in missing)
        raise ConfigError(
            f"the budgets file notifies route(s) without a URL set: {needed}; set it or remove the route"
        )
