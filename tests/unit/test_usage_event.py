"""UsageEvent validation: every rule gives a clear message naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from costline.schemas import json_schema
from costline.schemas.usage_event import (
    CHECK_TIME_WINDOW,
    MAX_TOKENS_PER_BUCKET,
    NOW,
    UsageEvent,
    hash_prompt_prefix,
    hash_user,
)

NOW_ = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def valid(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": "2026-11-23T11:00:00Z",
        "source": "sdk.openai",
        "provider": "openai",
        "request_model": "gpt-5",
        "tokens": {"input_uncached": 10, "output_visible": 5},
        "attribution": {"team": "search", "user_hash": hash_user("alice")},
    }
    data.update(overrides)
    return data


def errors_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        UsageEvent.model_validate(data, context={NOW: NOW_})
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_a_valid_event_round_trips_through_json() -> None:
    event = UsageEvent.model_validate(valid(), context={NOW: NOW_})
    again = UsageEvent.model_validate_json(event.model_dump_json(), context={NOW: NOW_})
    assert again == event
    assert event.model == "gpt-5"
    assert event.schema_version == 1


@pytest.mark.parametrize(
    ("tokens", "field"),
    [
        ({"input_uncached": -1}, "tokens.input_uncached"),
        ({"cache_read": MAX_TOKENS_PER_BUCKET + 1}, "tokens.cache_read"),
    ],
)
def test_negative_or_absurd_token_counts_are_rejected(tokens: dict[str, int], field: str) -> None:
    assert [loc for loc, _ in errors_of(valid(tokens=tokens))] == [field]


def test_future_timestamps_beyond_skew_are_rejected() -> None:
    [(loc, msg)] = errors_of(valid(occurred_at=(NOW_ + timedelta(hours=1)).isoformat()))
    assert loc == "occurred_at"
    assert "in the future" in msg


def test_ancient_timestamps_are_rejected_unless_the_window_check_is_off() -> None:
    old = valid(occurred_at="2020-01-01T00:00:00Z")
    [(loc, msg)] = errors_of(old)
    assert loc == "occurred_at"
    assert "older than" in msg
    assert UsageEvent.model_validate(old, context={CHECK_TIME_WINDOW: False}).occurred_at.year == 2020


def test_naive_timestamps_are_rejected() -> None:
    [(loc, msg)] = errors_of(valid(occurred_at="2026-11-23T11:00:00"))
    assert loc == "occurred_at"
    assert "timezone" in msg


def test_timestamps_are_normalized_to_utc() -> None:
    event = UsageEvent.model_validate(valid(occurred_at="2026-11-23T12:30:00+01:00"), context={NOW: NOW_})
    assert event.occurred_at == datetime(2026, 11, 23, 11, 30, tzinfo=UTC)
    assert event.occurred_at.tzinfo == UTC


def test_an_event_without_any_model_is_rejected() -> None:
    [(_, msg)] = errors_of(valid(request_model=None))
    assert "request_model or response_model" in msg


def test_an_empty_model_name_is_rejected() -> None:
    [(loc, _)] = errors_of(valid(request_model="   "))
    assert loc == "request_model"


def test_oversized_strings_are_rejected() -> None:
    errors = errors_of(valid(attribution={"team": "x" * 10_000}))
    assert errors[0][0] == "attribution.team"
    assert "at most 256" in errors[0][1]


def test_oversized_raw_usage_is_rejected() -> None:
    [(loc, msg)] = errors_of(valid(raw_usage={"blob": "x" * 20_000}))
    assert loc == "raw_usage"
    assert "limit" in msg


def test_unknown_fields_are_rejected_by_name() -> None:
    errors = errors_of(valid(prompt="secret", tokens={"input_tokens": 5}))
    assert ("prompt", "Extra inputs are not permitted") in errors
    assert ("tokens.input_tokens", "Extra inputs are not permitted") in errors


def test_raw_user_ids_are_refused_in_the_hash_field() -> None:
    [(loc, msg)] = errors_of(valid(attribution={"user_hash": "alice@example.com"}))
    assert loc == "attribution.user_hash"
    assert "hash_user" in msg


def test_too_many_tags_are_rejected() -> None:
    [(loc, _)] = errors_of(valid(attribution={"tags": {f"k{i}": "v" for i in range(40)}}))
    assert loc == "attribution.tags"


def test_event_ids_must_be_safe_identifiers() -> None:
    [(loc, _)] = errors_of(valid(event_id="has space"))
    assert loc == "event_id"


def test_bucket_totals_follow_otel_inclusion() -> None:
    event = UsageEvent.model_validate(
        valid(
            tokens={
                "input_uncached": 1,
                "cache_read": 2,
                "cache_write_5m": 3,
                "cache_write_1h": 4,
                "output_visible": 5,
                "output_reasoning": 6,
            }
        ),
        context={NOW: NOW_},
    )
    assert event.tokens.input_total == 10
    assert event.tokens.output_total == 11


def test_hashes_are_stable_and_do_not_contain_the_input() -> None:
    assert hash_user("alice", "s") == hash_user("alice", "s") != hash_user("alice", "t")
    digest = hash_prompt_prefix("You are a helpful assistant")
    assert len(digest) == 32
    assert "helpful" not in digest


def test_checked_in_json_schema_matches_the_model() -> None:
    on_disk = json.loads(json_schema.checked_in_path().read_text(encoding="utf-8"))
    assert on_disk == json.loads(json_schema.render()), "run `make schema` and commit the result"


def test_timestamps_keep_whole_milliseconds_like_the_store() -> None:
    event = UsageEvent.model_validate(valid(occurred_at="2026-11-23T11:00:00.123987Z"), context={NOW: NOW_})
    assert event.occurred_at.microsecond == 123_000
