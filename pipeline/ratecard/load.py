"""Reading and writing rate cards: our YAML format, or a LiteLLM price map converted on the fly.

The YAML reader is strict on purpose, because a rate card is money:

* every problem is reported as ``FILE:LINE: entries[3].prices.input: message``, with the line of
  the offending node, so a card with 200 entries can be fixed without guessing;
* ``yes``/``no``/``on``/``off`` stay strings and ``16:30`` stays a time (YAML 1.1 would turn them
  into booleans and the integer 990);
* a bare YAML float (``input: 3.5``) is an error: other YAML tools read it as a binary float, so
  decimals must be quoted strings (``input: "3.5"``); integers are exact and accepted;
* dates stay strings until the model parses them, so a bad date is a message, not a traceback;
* a key given twice in one mapping is an error (YAML would silently keep the last one).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from costline.pipeline.ratecard.model import RATECARD_SCHEMA, RateCard
from costline.schemas.errors import RateCardError

logger = logging.getLogger(__name__)

#: Path of a node inside the document, as pydantic reports it: ("entries", 3, "prices", "input").
Loc = tuple[str | int, ...]
Severity = Literal["error", "warning"]

DEFAULT_CARD_RESOURCE = "default.yaml"

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in a rate card, with where it is."""

    file: str
    line: int | None
    path: str
    message: str
    severity: Severity = "error"

    def format(self, *, with_severity: bool = True) -> str:
        """`FILE:LINE: [severity: ]path: message`, the shape editors and CI logs link to."""
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        parts = [where]
        if with_severity:
            parts.append(self.severity)
        if self.path:
            parts.append(self.path)
        return ": ".join([*parts, self.message])


@dataclass
class SourceMap:
    """Line (1-based) of every node of a YAML document, by its path."""

    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The line of `loc`, or of its nearest ancestor that exists (a missing field's parent)."""
        parts = tuple(loc)
        while True:
            if parts in self.lines:
                return self.lines[parts]
            if not parts:
                return None
            parts = parts[:-1]


@dataclass
class ParsedCard:
    """A card read from text: the card if it is valid, and every problem found on the way."""

    file: str
    card: RateCard | None
    problems: list[Problem]
    source_map: SourceMap
    data: Any = None


def format_loc(loc: Iterable[str | int]) -> str:
    """`entries[3].prices.input` from ("entries", 3, "prices", "input")."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


# --- YAML loading ---------------------------------------------------------------------------


class _CardLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2-like scalars: no yes/no/on/off booleans, no base-60, no timestamps."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012


_CardLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CardLoader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?[0-9][0-9_]*$"), list("-+0123456789"))
_CardLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CardLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_CardLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    # Decimal only: YAML 1.1 would read 010 as octal 8.
    return int(str(loader.construct_scalar(node)).replace("_", ""))


def _construct_bare_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    # Kept as its text; `_index` reports it as an error with its line.
    return str(loader.construct_scalar(node))


_CardLoader.add_constructor(_INT_TAG, _construct_int)
_CardLoader.add_constructor(_FLOAT_TAG, _construct_bare_float)


def _index(
    node: yaml.Node, loc: Loc, source: SourceMap, problems: list[Problem], file: str, bare_floats: bool
) -> None:
    """Record the line of every node under `node`, and report duplicate keys (and bare floats)."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _FLOAT_TAG and not bare_floats:
            problems.append(
                Problem(
                    file,
                    node.start_mark.line + 1,
                    format_loc(loc),
                    f"bare YAML number {node.value}: write decimals as quoted strings "
                    f'("{node.value}") so no YAML tool reads them as binary floats',
                )
            )
        return
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            source.lines[(*loc, i)] = item.start_mark.line + 1
            _index(item, (*loc, i), source, problems, file, bare_floats)
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(file, line, format_loc(loc), "mapping keys must be plain strings"))
                continue
            key = str(key_node.value)
            if key == "<<":
                continue
            if key in seen:
                problems.append(
                    Problem(
                        file,
                        line,
                        format_loc((*loc, key)),
                        f"key {key!r} is given twice in this mapping (first on line {seen[key]}); "
                        "YAML would silently keep the last one, so remove one",
                    )
                )
                continue
            seen[key] = line
            source.lines[(*loc, key)] = line
            _index(value_node, (*loc, key), source, problems, file, bare_floats)


def parse_yaml_lines(
    text: str, file: str, loader_class: type[yaml.SafeLoader] | None = None, *, bare_floats: bool = False
) -> tuple[Any, SourceMap, list[Problem]]:
    """The document as Python data, the line of every node, and syntax-level problems.

    `loader_class` decides how scalars are read (the rate card's loader when None) and
    `bare_floats` whether an unquoted decimal is allowed (a loader that reads it as an exact
    Decimal) or a problem. The other config files (budgets) share this so their errors point at
    lines the same way.
    """
    source = SourceMap()
    problems: list[Problem] = []
    loader = (loader_class or _CardLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, source, problems
        source.lines[()] = node.start_mark.line + 1
        _index(node, (), source, problems, file, bare_floats)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        problems.append(Problem(file, line, "", f"not valid YAML: {what}"))
        return None, source, problems
    except (yaml.YAMLError, ArithmeticError) as exc:  # ArithmeticError: a loader's Decimal scalar
        problems.append(Problem(file, None, "", f"not valid YAML: {exc}"))
        return None, source, problems
    finally:
        loader.dispose()
    return data, source, problems


# --- pydantic errors to line-precise problems ------------------------------------------------


def _refine_loc(loc: Loc, message: str, data: Any) -> Loc:
    """Point a model-level error at the node that causes it rather than at the whole entry."""
    if "effective_to must be after effective_from" in message:
        return (*loc, "effective_to")
    if "context_tiers must be in increasing order" in message:
        tiers = _get(data, (*loc, "context_tiers"))
        if isinstance(tiers, list):
            previous = None
            for i, tier in enumerate(tiers):
                above = tier.get("above_input_tokens") if isinstance(tier, dict) else None
                if isinstance(above, int) and previous is not None and above <= previous:
                    return (*loc, "context_tiers", i, "above_input_tokens")
                previous = above if isinstance(above, int) else previous
        return (*loc, "context_tiers")
    match = re.search(r"duplicate entry id '(.*)'", message)
    if match and not loc:
        entries = _get(data, ("entries",))
        if isinstance(entries, list):
            seen = 0
            for i, entry in enumerate(entries):
                if isinstance(entry, dict) and entry.get("id") == match.group(1):
                    seen += 1
                    if seen == 2:
                        return ("entries", i, "id")
    return loc


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _message(error: Any) -> str:
    kind = error.get("type", "")
    loc = error.get("loc", ())
    if kind == "extra_forbidden":
        return f"unknown field {loc[-1]!r}: check its spelling against docs/ratecard.md"
    if kind == "missing":
        return f"missing required field {loc[-1]!r}"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = error.get("input")
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        message = f"{message} (got {value!r})"
    return message


def _as_instant(value: Any) -> datetime | None:
    """A lenient read of an effective date, only to compare two of them; None when unreadable."""
    try:
        if isinstance(value, str) and len(value) == 10:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        if isinstance(value, str):
            instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return instant if instant.tzinfo is not None else None
    except ValueError:
        return None
    return None


def structural_problems(data: Any, file: str, source: SourceMap) -> list[Problem]:
    """Cross-field rules checked on the raw data, so they show even when a field is also wrong.

    Pydantic runs model validators only once every field is valid; without this, a card with a
    typo and a reversed period would need two rounds of fixes.
    """
    problems: list[Problem] = []
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return problems
    first_line_of_id: dict[str, int | None] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        entry_id = entry.get("id")
        if isinstance(entry_id, str):
            loc: Loc = ("entries", i, "id")
            if entry_id in first_line_of_id:
                problems.append(
                    Problem(
                        file,
                        source.line_of(loc),
                        format_loc(loc),
                        f"duplicate entry id {entry_id!r} (first on line {first_line_of_id[entry_id]}); "
                        "every entry needs its own id",
                    )
                )
            else:
                first_line_of_id[entry_id] = source.line_of(loc)
        start, end = _as_instant(entry.get("effective_from")), _as_instant(entry.get("effective_to"))
        if start is not None and end is not None and end <= start:
            loc = ("entries", i, "effective_to")
            problems.append(
                Problem(
                    file,
                    source.line_of(loc),
                    format_loc(loc),
                    f"effective_to {entry.get('effective_to')} is not after effective_from "
                    f"{entry.get('effective_from')}; an entry covers [from, to)",
                )
            )
        tiers = entry.get("context_tiers")
        if isinstance(tiers, list):
            previous: int | None = None
            for t, tier in enumerate(tiers):
                above = tier.get("above_input_tokens") if isinstance(tier, dict) else None
                if not isinstance(above, int) or isinstance(above, bool):
                    continue
                if previous is not None and above <= previous:
                    loc = ("entries", i, "context_tiers", t, "above_input_tokens")
                    problems.append(
                        Problem(
                            file,
                            source.line_of(loc),
                            format_loc(loc),
                            f"context tier above {above} tokens comes after the tier above {previous}; "
                            "list tiers in increasing order of above_input_tokens, without repeats",
                        )
                    )
                previous = above
    return problems


def problems_from_validation_error(
    exc: ValidationError, file: str, source: SourceMap, data: Any, *, skip_paths: set[str] | None = None
) -> list[Problem]:
    """Each pydantic error as a `Problem` on the line of the node it is about."""
    problems = []
    for error in exc.errors():
        loc: Loc = tuple(error.get("loc", ()))
        message = _message(error)
        loc = _refine_loc(loc, message, data)
        path = format_loc(loc)
        if skip_paths and path in skip_paths:
            continue  # already reported, more precisely (a bare float) or by `structural_problems`
        problems.append(Problem(file, source.line_of(loc), path, message))
    return problems


# --- public API ------------------------------------------------------------------------------


def parse_rate_card_text(text: str, filename: str = "<string>") -> ParsedCard:
    """Parse our YAML (or JSON) card format and collect every problem instead of stopping at one."""
    data, source, problems = parse_yaml_lines(text, filename)
    if problems and data is None:
        return ParsedCard(filename, None, problems, source, data)
    if not isinstance(data, dict):
        problems.append(
            Problem(
                filename,
                source.line_of(()) or 1,
                "",
                f"a rate card is a mapping with `schema: {RATECARD_SCHEMA}` and `entries:`",
            )
        )
        return ParsedCard(filename, None, problems, source, data)
    if "schema" not in data:
        problems.append(
            Problem(
                filename,
                source.line_of(()) or 1,
                "schema",
                f"missing `schema: {RATECARD_SCHEMA}` at the top; add it so the format version is known",
            )
        )
    problems.extend(structural_problems(data, filename, source))
    card = None
    try:
        card = RateCard.model_validate(data)
    except ValidationError as exc:
        skip = {p.path for p in problems}
        problems.extend(problems_from_validation_error(exc, filename, source, data, skip_paths=skip))
    problems.sort(key=lambda p: (p.line or 0, p.path))
    if any(p.severity == "error" for p in problems):
        card = None
    return ParsedCard(filename, card, problems, source, data)


def rate_card_from_yaml_text(text: str, filename: str = "<string>") -> RateCard:
    """A card from YAML text; RateCardError lists every problem as FILE:LINE: path: message."""
    parsed = parse_rate_card_text(text, filename)
    if parsed.card is None:
        raise RateCardError(_error_text(filename, parsed.problems))
    return parsed.card


def _error_text(filename: str, problems: list[Problem]) -> str:
    errors = [p for p in problems if p.severity == "error"]
    listed = "\n".join(p.format(with_severity=False) for p in errors)
    return f"rate card {filename} has {len(errors)} problem(s); fix them and load it again:\n{listed}"


def is_litellm_price_map(data: Any) -> bool:
    """Whether parsed JSON looks like LiteLLM's model price map rather than our card format."""
    if not isinstance(data, dict) or "entries" in data or "schema" in data:
        return False
    return any(isinstance(v, dict) and "litellm_provider" in v for v in data.values())


def read_card_text(path: Path) -> str:
    """The file's text, or a RateCardError saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RateCardError(
            f"rate card {path} does not exist; pass a YAML card or a LiteLLM price-map JSON file"
        ) from exc
    except IsADirectoryError as exc:
        raise RateCardError(f"rate card {path} is a directory; pass the card file itself") from exc
    except UnicodeDecodeError as exc:
        raise RateCardError(f"rate card {path} is not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    except OSError as exc:
        raise RateCardError(f"rate card {path} cannot be read: {exc.strerror}") from exc


def load_litellm_json(text: str, filename: str) -> Any | None:
    """Parsed JSON if `text` is a LiteLLM price map, else None (so it is read as our format)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if filename.endswith(".json"):
            raise RateCardError(
                f"{filename}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file or pass a YAML card"
            ) from exc
        return None
    return data if is_litellm_price_map(data) else None


def load_rate_card(path: Path, *, effective_from: datetime | None = None) -> RateCard:
    """Load a card file: our YAML format, or a LiteLLM price-map JSON converted on the fly.

    A LiteLLM map has no dates; `effective_from` dates the converted entries (default: the
    importer's undated start, so the map prices all history).
    """
    path = Path(path)
    text = read_card_text(path)
    litellm = load_litellm_json(text, str(path))
    if litellm is not None:
        from costline.pipeline.ratecard.litellm_import import UNDATED_EFFECTIVE_FROM, import_litellm

        result = import_litellm(litellm, effective_from=effective_from or UNDATED_EFFECTIVE_FROM)
        logger.info("converted LiteLLM price map %s: %s", path, result.report.one_line())
        return result.card
    return rate_card_from_yaml_text(text, str(path))


@cache
def load_default_rate_card() -> RateCard:
    """The card bundled with costline (read once per process)."""
    text = resources.files("costline.pipeline.ratecard").joinpath(DEFAULT_CARD_RESOURCE).read_text("utf-8")
    return rate_card_from_yaml_text(text, f"<bundled {DEFAULT_CARD_RESOURCE}>")


def default_rate_card_path() -> Path:
    """Where the bundled card lives on disk (for `costline ratecard validate` and docs)."""
    return Path(str(resources.files("costline.pipeline.ratecard").joinpath(DEFAULT_CARD_RESOURCE)))


# --- writing ---------------------------------------------------------------------------------


class _CardDumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """Writes decimals as quoted strings, dates as ISO dates, times as HH:MM, and no YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def decimal_text(value: Decimal) -> str:
    """`1.25`, `10`, `0.000001`: plain notation, no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", ""} else text


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", decimal_text(value), style='"')


def _represent_datetime(dumper: yaml.SafeDumper, value: datetime) -> yaml.ScalarNode:
    value = value.astimezone(UTC)
    midnight = value.time() == time(0)
    text = value.date().isoformat() if midnight else value.isoformat().replace("+00:00", "Z")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')


def _represent_time(dumper: yaml.SafeDumper, value: time) -> yaml.ScalarNode:
    text = value.strftime("%H:%M") if value.second == value.microsecond == 0 else value.isoformat()
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')


_CardDumper.add_representer(Decimal, _represent_decimal)
_CardDumper.add_representer(datetime, _represent_datetime)
_CardDumper.add_representer(time, _represent_time)


def rate_card_to_yaml(card: RateCard, *, header: str | None = None) -> str:
    """Our YAML format for `card`, prices as quoted decimal strings; `load` reads it back equal."""
    document = {
        "schema": RATECARD_SCHEMA,
        "entries": [
            entry.model_dump(mode="python", exclude_none=True, exclude_defaults=True)
            for entry in card.entries
        ],
    }
    body = yaml.dump(
        document,
        Dumper=_CardDumper,
        sort_keys=False,
        allow_unicode=True,
        width=1000,
        default_flow_style=False,
    )
    if header:
        comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
        return comment + body
    return body


def write_rate_card_yaml(card: RateCard, path: Path, *, header: str | None = None) -> None:
    """Write `card` to `path` in our YAML format (see `rate_card_to_yaml`)."""
    Path(path).write_text(rate_card_to_yaml(card, header=header), encoding="utf-8")
