"""Eval results: what teams measured per workload and model, and the quality gate built on them.

A result is one score (a fraction between 0 and 1: accuracy, pass rate, …) of one model on one
workload for one metric, with its sample size and date. Files are YAML (a list under `evals:`) or
CSV (a header row); every problem is reported with its line, and nothing is loaded from a file
that has any problem.

The gate: a cheaper candidate is recommended only when, on every metric both models were
evaluated on (latest result of each), the candidate's score is at most the workload's quality
floor below the current model's. No shared metric means no evidence: the candidate is listed as
`needs_eval`, never recommended.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from costline.schemas.errors import CostlineError, describe_validation_error

#: Largest score drop accepted when the workload's evals name no `quality_floor`.
DEFAULT_QUALITY_FLOOR = Decimal("0.02")
#: The metric cascades read: the share of calls the cheap model answers acceptably.
PASS_RATE = "pass_rate"
FIELDS: tuple[str, ...] = (
    "team",
    "workload",
    "model",
    "metric",
    "score",
    "sample_size",
    "evaluated_at",
    "quality_floor",
    "source",
)
REQUIRED: tuple[str, ...] = FIELDS[:7]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Fraction = Annotated[Decimal, Field(ge=0, le=1, max_digits=26, decimal_places=12)]


class EvalFileError(CostlineError):
    """An eval file (or request) with problems; `problems` has one line each."""

    def __init__(self, where: str, problems: Sequence[str]) -> None:
        super().__init__(
            f"{where}: {len(problems)} problem(s), nothing imported:\n  " + "\n  ".join(problems)
        )
        self.problems = list(problems)


class EvalResult(BaseModel):
    """One score of one model on one workload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: Name
    workload: Name
    model: Name
    metric: Name
    score: Fraction = Field(description="A fraction between 0 and 1 (0.93, not 93).")
    sample_size: Annotated[int, Field(ge=1, le=10**12)]
    evaluated_at: datetime
    quality_floor: Fraction | None = Field(
        None, description="Largest drop of this metric the workload accepts against the current model."
    )
    source: Annotated[str, StringConstraints(max_length=512)] = ""

    @field_validator("score", "quality_floor", mode="before")
    @classmethod
    def _exact(cls, value: object) -> object:
        if isinstance(
            value, float
        ):  # YAML/JSON number: use its shortest decimal spelling, not the binary value
            return Decimal(repr(value))
        return value

    @field_validator("evaluated_at", mode="before")
    @classmethod
    def _date_or_time(cls, value: object) -> object:
        if isinstance(value, str) and len(value.strip()) == 10:
            value = date.fromisoformat(value.strip())
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("evaluated_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "workload": self.workload,
            "model": self.model,
            "metric": self.metric,
            "score": plain(self.score),
            "sample_size": self.sample_size,
            "evaluated_at": self.evaluated_at.isoformat().replace("+00:00", "Z"),
            "quality_floor": None if self.quality_floor is None else plain(self.quality_floor),
            "source": self.source,
        }


def plain(value: Decimal) -> str:
    """A score as written by people: 0.9, not 0.900000000000 (the store keeps 12 decimals)."""
    return format(value.normalize(), "f")


def validate_rows(rows: Iterable[tuple[str, Mapping[str, Any]]], source: str = "") -> list[EvalResult]:
    """Validate `(where, mapping)` pairs; raises EvalFileError listing every bad one."""
    results: list[EvalResult] = []
    problems: list[str] = []
    for where, row in rows:
        if not isinstance(row, Mapping):
            problems.append(f"{where}: expected a mapping of {', '.join(REQUIRED)}, got {type(row).__name__}")
            continue
        data = {k: v for k, v in row.items() if v is not None and v != ""}
        if source and "source" not in data:
            data["source"] = source
        try:
            results.append(EvalResult.model_validate(data))
        except ValidationError as exc:
            problems.append(f"{where}: {describe_validation_error(exc)}")
    if problems:
        raise EvalFileError("eval results", problems)
    return results


def parse_csv(text: str, source: str = "") -> list[EvalResult]:
    """CSV with a header row naming the columns (team, workload, model, metric, score, ...)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name for name in header if name not in FIELDS]
    if missing or unknown:
        header_problems = []
        if missing:
            header_problems.append(f"line 1: header lacks column(s) {', '.join(missing)}")
        if unknown:
            header_problems.append(
                f"line 1: unknown column(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}"
            )
        raise EvalFileError(source or "CSV", header_problems)
    reader.fieldnames = header
    rows: list[tuple[str, Mapping[str, Any]]] = []
    problems: list[str] = []
    for row in reader:
        extra = row.pop(None, None)
        where = f"line {reader.line_num}"
        if extra:
            problems.append(
                f"{where}: {len(header) + len(extra)} values but the header has {len(header)} columns"
            )
            continue
        rows.append((where, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}))
    results: list[EvalResult] = []
    try:
        results = validate_rows(rows, source)
    except EvalFileError as exc:
        problems.extend(exc.problems)
    if problems:
        problems.sort(key=_line_number)
        raise EvalFileError(source or "CSV", problems)
    return results


def _line_number(problem: str) -> int:
    head = problem.split(":", 1)[0].split()
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else 0


def parse_yaml(text: str, source: str = "") -> list[EvalResult]:
    """YAML: `evals:` (or a top-level list) of mappings; problems name the item's line."""
    where_file = source or "YAML"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EvalFileError(where_file, [f"not valid YAML: {exc}"]) from exc
    items, item_nodes = document, node
    if isinstance(document, dict):
        unknown = [k for k in document if k not in ("evals", "source")]
        if unknown or "evals" not in document:
            raise EvalFileError(
                where_file, ["line 1: expected a mapping with an `evals:` list (and `source:`)"]
            )
        items = document["evals"]
        source = str(document.get("source") or source)
        item_nodes = next(v for k, v in node.value if k.value == "evals") if node is not None else None
    if not isinstance(items, list):
        raise EvalFileError(where_file, ["line 1: expected a list of eval results under `evals:`"])
    lines = [child.start_mark.line + 1 for child in item_nodes.value] if item_nodes is not None else []
    rows = [
        (
            f"line {lines[i] if i < len(lines) else '?'} (evals[{i}])",
            item,
        )
        for i, item in enumerate(items)
    ]
    try:
        return validate_rows(rows, source)
    except EvalFileError as exc:
        raise EvalFileError(where_file, exc.problems) from None


def parse_eval_file(path: Path) -> list[EvalResult]:
    """A YAML (.yaml/.yml) or CSV (.csv) eval file; the source of each result is the file name."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(str(path), [f"cannot read: {exc}"]) from exc
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return parse_csv(text, source=path.name)
    if suffix in (".yaml", ".yml"):
        return parse_yaml(text, source=path.name)
    raise EvalFileError(str(path), ["unknown file type; name it .yaml, .yml or .csv"])


@dataclass(frozen=True)
class EvalBook:
    """The latest result per (team, workload, model, metric), and the workloads' quality floors."""

    latest: dict[tuple[str, str, str, str], EvalResult]
    floors: dict[tuple[str, str, str], Decimal]

    @classmethod
    def of(cls, results: Iterable[EvalResult]) -> EvalBook:
        latest: dict[tuple[str, str, str, str], EvalResult] = {}
        floors: dict[tuple[str, str, str], tuple[datetime, Decimal]] = {}
        for r in results:
            key = (r.team, r.workload, r.model.lower(), r.metric)
            if key not in latest or r.evaluated_at >= latest[key].evaluated_at:
                latest[key] = r
            if r.quality_floor is not None:
                fkey = (r.team, r.workload, r.metric)
                if fkey not in floors or r.evaluated_at >= floors[fkey][0]:
                    floors[fkey] = (r.evaluated_at, r.quality_floor)
        return cls(latest, {k: v for k, (_, v) in floors.items()})

    def scores(self, team: str, workload: str, names: Iterable[str]) -> dict[str, EvalResult]:
        """Latest result per metric for a model known by any of `names` (latest wins across names)."""
        wanted = {n.lower() for n in names}
        found: dict[str, EvalResult] = {}
        for (t, w, model, metric), result in self.latest.items():
            if (t, w) != (team, workload) or model not in wanted:
                continue
            if metric not in found or result.evaluated_at > found[metric].evaluated_at:
                found[metric] = result
        return found

    def floor(self, team: str, workload: str, metric: str) -> Decimal:
        return self.floors.get((team, workload, metric), DEFAULT_QUALITY_FLOOR)


@dataclass(frozen=True)
class GateResult:
    """Whether the candidate may replace the current model, and the evidence for it."""

    verdict: str  # "pass" | "fail" | "no_evidence"
    evidence: dict[str, Any] | None


def gate(
    book: EvalBook, team: str, workload: str, current: Iterable[str], candidate: Iterable[str]
) -> GateResult:
    """Compare the latest scores of both models on every metric they share."""
    mine = book.scores(team, workload, current)
    theirs = book.scores(team, workload, candidate)
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return GateResult("no_evidence", None)
    metrics = []
    passed = True
    for metric in shared:
        cur, cand = mine[metric], theirs[metric]
        floor = book.floor(team, workload, metric)
        drop = cur.score - cand.score
        ok = drop <= floor
        passed = passed and ok
        metrics.append(
            {
                "metric": metric,
                "current_score": plain(cur.score),
                "candidate_score": plain(cand.score),
                "drop": plain(drop),
                "quality_floor": plain(floor),
                "passed": ok,
                "current_sample_size": cur.sample_size,
                "candidate_sample_size": cand.sample_size,
                "current_evaluated_at": cur.evaluated_at.isoformat(),
                "candidate_evaluated_at": cand.evaluated_at.isoformat(),
            }
        )
    return GateResult("pass" if passed else "fail", {"passed": passed, "metrics": metrics})


def decimal_or_none(value: object) -> Decimal | None:
    """A store value as Decimal (None stays None)."""
    if value is None:
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None
