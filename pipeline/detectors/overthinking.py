"""Overthinking: reasoning tokens large against the visible answer, the task, or the workload's norm.

Three rules, checked in this order (a call is flagged once, under the first rule it breaks; the
others it broke are listed in its evidence):

* `reasoning_vs_answer` — reasoning ≥ ratio × visible output while the visible output is short;
* `high_effort_tiny_answers` — high reasoning effort on a workload whose answers are consistently
  tiny (classification, yes/no, extraction);
* `above_workload_baseline` — reasoning above factor × the workload's own percentile for calls of
  similar input size (same power of two of input tokens).

No rule fires below `min_reasoning_tokens`. The wasted cost is the reasoning cost above a baseline:
for `above_workload_baseline` the size class's median, otherwise an allowance of
max(allowance_tokens, allowance_ratio × visible output), lowered to the median when that is lower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costline.pipeline.detectors.baselines import (
    SUB_BUCKETS,
    bucket_of,
    hist_add,
    hist_quantile,
    hist_share_at_most,
    hist_total,
)
from costline.pipeline.detectors.signals import OUT, REASON, UsageSignal

if TYPE_CHECKING:
    from costline.pipeline.detectors.engine import WorkloadRun

KIND = "overthinking"


def observe(run: WorkloadRun, s: UsageSignal) -> None:
    """Judge one call against the workload's baselines, then add it to them."""
    cfg = run.cfg.overthinking
    reasoning, visible = s.tokens[REASON], s.tokens[OUT]
    if s.status != "ok" or (reasoning == 0 and visible == 0):
        return
    state: dict[str, Any] = run.ws.setdefault("ot", {"by_input": {}, "out": {}})
    size_class = str(bucket_of(s.input_total) // SUB_BUCKETS)
    by_input: dict[str, int] = state["by_input"].setdefault(size_class, {})
    answers: dict[str, int] = state["out"]

    rules: list[str] = []
    percentile = None
    if reasoning >= cfg.min_reasoning_tokens:
        if visible <= cfg.short_output_tokens and reasoning >= cfg.ratio * max(visible, 1):
            rules.append("reasoning_vs_answer")
        if (
            s.reasoning_effort in cfg.high_efforts
            and hist_total(answers) >= cfg.min_workload_samples
            and hist_share_at_most(answers, cfg.tiny_output_tokens) >= cfg.tiny_answer_share
        ):
            rules.append("high_effort_tiny_answers")
        if hist_total(by_input) >= cfg.min_baseline_samples:
            percentile = hist_quantile(by_input, cfg.baseline_percentile)
            if percentile is not None and reasoning > cfg.baseline_factor * max(percentile, 1):
                rules.append("above_workload_baseline")
    hist_add(by_input, reasoning)
    hist_add(answers, visible)
    if not rules:
        return

    median = hist_quantile(by_input, 0.5) if hist_total(by_input) >= cfg.min_baseline_samples else None
    allowance = max(cfg.allowance_tokens, int(cfg.allowance_ratio * visible))
    if rules[0] == "above_workload_baseline":
        baseline = median if median is not None else allowance
    else:
        baseline = allowance if median is None else min(allowance, median)
    excess = max(0, reasoning - baseline)
    reasoning_cost = s.cost_of(REASON)
    wasted = reasoning_cost * excess // reasoning
    evidence: dict[str, Any] = {
        "rules": ",".join(rules),
        "reasoning_tokens": reasoning,
        "visible_tokens": visible,
        "baseline_reasoning_tokens": baseline,
        "excess_reasoning_tokens": excess,
        "reasoning_cost_pico": reasoning_cost,
        "reasoning_effort": s.reasoning_effort or "unknown",
        "thresholds": {
            "ratio": cfg.ratio,
            "short_output_tokens": cfg.short_output_tokens,
            "min_reasoning_tokens": cfg.min_reasoning_tokens,
            "baseline_percentile": cfg.baseline_percentile,
            "baseline_factor": cfg.baseline_factor,
            "tiny_output_tokens": cfg.tiny_output_tokens,
        },
    }
    if percentile is not None:
        evidence["workload_percentile_reasoning_tokens"] = percentile
    run.flag_call(
        KIND,
        rules[0],
        at_ms=s.at_ms,
        provider=s.provider,
        model=s.model,
        event_id=s.event_id,
        wasted=wasted,
        observed=s.cost,
        evidence=evidence,
    )
