"""Recommendations as a routing policy a gateway can apply: neutral YAML rules, or a LiteLLM config.

Only `recommended` rows are exported (a `needs_eval` candidate is not a decision yet).

Neutral rules (`costline.routing/v1`) say, per workload, what to match and what to do::

    schema: costline.routing/v1
    generated_at: '2026-11-20T10:00:00Z'
    rules:
      - id: 3f2a...
        kind: model_switch
        match: {team: support, workload: ticket-triage, provider: anthropic, model: claude-sonnet-4-6}
        action: {route_to: {provider: anthropic, model: claude-haiku-4-5}}
        monthly_saving: '412.50'
        saving_pct: '66.67'

`load_policy` reads them back (strictly: unknown keys and bad values are errors with their path).

The LiteLLM export uses tag-based routing: each workload's deployment of the model its application
asks for carries the tag `costline:<team>/<workload>` (send it as request `tags` or key metadata),
with `router_settings.enable_tag_filtering`; untagged requests keep a `default` deployment of the
model they asked for. Cascades get their own model group whose fallback is the current model.
Batch has no router setting: it is listed as a comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

from costline.pipeline.ratecard.litellm_import import PROVIDER_ROUTES
from costline.pipeline.recommend.model import Kind
from costline.schemas.errors import CostlineError, describe_validation_error

POLICY_SCHEMA = "costline.routing/v1"
TAG_PREFIX = "costline:"
#: Providers where LiteLLM must inject a `cache_control` marker (the others cache by themselves).
CACHE_MARKER_PROVIDERS = frozenset({"anthropic", "aws.bedrock", "gcp.vertex_ai"})

#: costline provider route → LiteLLM provider prefix (the first LiteLLM name of each route).
LITELLM_PREFIX: dict[str, str] = {}
for _litellm_name, _route in PROVIDER_ROUTES.items():
    LITELLM_PREFIX.setdefault(_route, _litellm_name)


class PolicyError(CostlineError):
    """A routing policy document that does not follow `costline.routing/v1`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)


class Match(_Strict):
    team: str
    workload: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)


class CacheAction(_Strict):
    ttl: Literal["5m", "30m", "1h", "12h"]


class CascadeAction(_Strict):
    first: ModelRef
    escalate_to: ModelRef
    pass_rate: Decimal = Field(ge=0, le=1)

    @field_serializer("pass_rate")
    def _text(self, value: Decimal) -> str:
        return format(value, "f")


class Action(_Strict):
    """Exactly one of the fields, matching the rule's kind."""

    route_to: ModelRef | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    prompt_caching: CacheAction | None = None
    service_tier: Literal["batch"] | None = None
    cascade: CascadeAction | None = None


_ACTION_OF_KIND: dict[str, str] = {
    "model_switch": "route_to",
    "reasoning_effort": "reasoning_effort",
    "prompt_caching": "prompt_caching",
    "batch": "service_tier",
    "cascade": "cascade",
}


class Rule(_Strict):
    id: str = Field(min_length=1)
    kind: Kind
    match: Match
    action: Action
    monthly_saving: Decimal
    saving_pct: Decimal

    @field_serializer("monthly_saving", "saving_pct")
    def _text(self, value: Decimal) -> str:
        return format(value, "f")

    @model_validator(mode="after")
    def _action_fits_kind(self) -> Rule:
        given = [name for name, value in self.action if value is not None]
        expected = _ACTION_OF_KIND[self.kind]
        if given != [expected]:
            raise ValueError(
                f"a {self.kind} rule needs exactly the action `{expected}`, got {given or 'none'}"
            )
        return self


class RoutingPolicy(_Strict):
    schema_: Literal["costline.routing/v1"] = Field("costline.routing/v1", alias="schema")
    generated_at: datetime | None = None
    rules: list[Rule] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_serializer("generated_at")
    def _iso(self, value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ref(data: Mapping[str, Any]) -> ModelRef:
    return ModelRef(provider=str(data["provider"]), model=str(data["model"]))


def rule_from_row(row: Mapping[str, Any]) -> Rule:
    """A neutral rule from one API row (`GET /recommendations`)."""
    current, proposed = row["current"], row["proposed"]
    kind = row["kind"]
    action: dict[str, Any]
    if kind == "model_switch":
        action = {"route_to": _ref(proposed)}
    elif kind == "reasoning_effort":
        action = {"reasoning_effort": proposed["reasoning_effort"]}
    elif kind == "prompt_caching":
        action = {"prompt_caching": CacheAction(ttl=proposed["ttl"])}
    elif kind == "batch":
        action = {"service_tier": "batch"}
    elif kind == "cascade":
        action = {
            "cascade": CascadeAction(
                first=_ref(proposed["first"]),
                escalate_to=_ref(proposed["escalate_to"]),
                pass_rate=Decimal(proposed["pass_rate"]),
            )
        }
    else:
        raise PolicyError(f"unknown recommendation kind {kind!r}")
    return Rule(
        id=row["id"],
        kind=kind,
        match=Match(
            team=row["team"], workload=row["workload"], provider=current["provider"], model=current["model"]
        ),
        action=Action(**action),
        monthly_saving=Decimal(row["monthly_saving"]),
        saving_pct=Decimal(row["saving_pct"]),
    )


def policy_from_rows(
    rows: Iterable[Mapping[str, Any]], generated_at: datetime | None = None
) -> RoutingPolicy:
    """The policy of the `recommended` rows, in their (ranked) order."""
    rules = [rule_from_row(row) for row in rows if row.get("status") == "recommended"]
    return RoutingPolicy(generated_at=generated_at, rules=rules)


def dump_policy(policy: RoutingPolicy) -> str:
    """Neutral YAML (money and rates as strings, so no reader turns them into floats)."""
    data = policy.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_policy(text: str) -> RoutingPolicy:
    """Read neutral YAML; raises PolicyError naming the offending path."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"routing policy is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError("routing policy must be a mapping with `schema` and `rules`")
    try:
        return RoutingPolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"routing policy: {describe_validation_error(exc)}") from exc


def litellm_model(provider: str, model: str) -> str:
    """The `litellm_params.model` string of a costline provider route and model."""
    return f"{LITELLM_PREFIX.get(provider, provider)}/{model}"


def workload_tag(team: str, workload: str) -> str:
    return f"{TAG_PREFIX}{team}/{workload}"


def litellm_config(policy: RoutingPolicy) -> str:
    """A LiteLLM proxy config (`model_list` + `router_settings`) applying the policy's rules."""
    deployments: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    defaults: dict[str, dict[str, Any]] = {}
    fallbacks: list[dict[str, list[str]]] = []
    comments: list[str] = []
    model_list: list[dict[str, Any]] = []
    for rule in policy.rules:
        m = rule.match
        if rule.kind == "batch":
            comments.append(
                f"# batch: {m.team}/{m.workload} on {m.provider}/{m.model}: send through the provider's "
                f"batch API (saves {rule.monthly_saving} USD/month); no router setting does this"
            )
            continue
        if rule.kind == "cascade":
            assert rule.action.cascade is not None
            cascade = rule.action.cascade
            group = f"costline-cascade/{m.team}/{m.workload}"
            model_list.append(
                {
                    "model_name": group,
                    "litellm_params": {"model": litellm_model(cascade.first.provider, cascade.first.model)},
                    "model_info": {
                        "costline_rule": rule.id,
                        "costline_pass_rate": format(cascade.pass_rate, "f"),
                    },
                }
            )
            fallbacks.append({group: [m.model]})
            defaults.setdefault(m.model, _default_deployment(m))
            continue
        key = (m.team, m.workload, m.provider, m.model)
        deployment = deployments.get(key)
        if deployment is None:
            deployment = deployments[key] = {
                "model_name": m.model,
                "litellm_params": {
                    "model": litellm_model(m.provider, m.model),
                    "tags": [workload_tag(m.team, m.workload)],
                },
                "model_info": {"costline_rules": []},
            }
            defaults.setdefault(m.model, _default_deployment(m))
        params = deployment["litellm_params"]
        deployment["model_info"]["costline_rules"].append(rule.id)
        if rule.action.route_to is not None:
            params["model"] = litellm_model(rule.action.route_to.provider, rule.action.route_to.model)
        if rule.action.reasoning_effort is not None:
            params["reasoning_effort"] = rule.action.reasoning_effort
        if rule.action.prompt_caching is not None:
            deployment["model_info"]["costline_prompt_cache_ttl"] = rule.action.prompt_caching.ttl
            if m.provider in CACHE_MARKER_PROVIDERS:
                params["cache_control_injection_points"] = [{"location": "message", "role": "system"}]
    model_list.extend(deployments.values())
    model_list.extend(defaults.values())
    router_settings: dict[str, Any] = {"enable_tag_filtering": True}
    if fallbacks:
        router_settings["fallbacks"] = fallbacks
    header = [
        "# LiteLLM proxy config generated by `costline recommend export --format litellm`.",
        f"# Tag each workload's requests with `{TAG_PREFIX}<team>/<workload>` (request `tags`).",
        *comments,
    ]
    body = yaml.safe_dump(
        {"model_list": model_list, "router_settings": router_settings}, sort_keys=False, allow_unicode=True
    )
    return "\n".join(header) + "\n" + body


def _default_deployment(m: Match) -> dict[str, Any]:
    return {
        "model_name": m.model,
        "litellm_params": {"model": litellm_model(m.provider, m.model), "tags": ["default"]},
    }


def export(rows: Iterable[Mapping[str, Any]], fmt: str, generated_at: datetime | None = None) -> str:
    """`yaml` (neutral rules) or `litellm` text of the recommended rows."""
    policy = policy_from_rows(rows, generated_at)
    if fmt == "yaml":
        return dump_policy(policy)
    if fmt == "litellm":
        return litellm_config(policy)
    raise PolicyError(f"unknown export format {fmt!r}; use litellm or yaml")
