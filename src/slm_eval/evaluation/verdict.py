"""The benchmark's decision: an overall score with a bootstrap CI, and PASS / FAIL per model and device.

For each use case the verdict checks the primary score against its threshold, corpus figures against
their limits (e.g. the false-accept rate of document checks), and the 90th-percentile end-to-end latency
against its budget. On the ``host`` profile the latency is the measured one; on any other profile it is
projected: the measured p90 scaled by the roofline projection's ratio of the device's latency to this
machine's for a request of the same size (see ``docs/projection.md``). The overall score is the weighted
mean of the use cases' primary scores; its confidence interval resamples the examples of every use case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slm_eval.evaluation.benchmark_settings import BenchmarkSettings, UseCaseRequirements
from slm_eval.results.report import fmt


@dataclass(frozen=True)
class UseCaseResult:
    """One use case's figures from its run, as the verdict needs them."""

    use_case: str
    primary: str
    scores: tuple[float, ...]
    corpus: Mapping[str, float]
    fits: bool
    fits_reason: str | None
    latency_p90_ms: float | None
    latency_label: str
    valid: bool

    @property
    def mean(self) -> float | None:
        return sum(self.scores) / len(self.scores) if self.scores else None


@dataclass(frozen=True)
class OverallScore:
    """The weighted mean of primary scores with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    confidence: float
    weights: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "weights": dict(self.weights),
            "unit": "score (0-1)",
            "label": "measured",
        }


@dataclass(frozen=True)
class Verdict:
    """PASS when every check holds; each failed check is a reason."""

    passed: bool
    reasons: tuple[str, ...] = field(default=())
    checks: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "PASS" if self.passed else "FAIL",
            "reasons": list(self.reasons),
            "checks": list(self.checks),
        }


def normalised_weights(use_cases: Sequence[str], settings: BenchmarkSettings) -> dict[str, float]:
    """The configured weights of the use cases that ran, scaled to sum to 1."""
    raw = {name: settings.use_cases[name].weight if name in settings.use_cases else 1.0 for name in use_cases}
    total = sum(raw.values())
    return {name: weight / total for name, weight in raw.items()}


def overall_score(
    results: Sequence[UseCaseResult],
    settings: BenchmarkSettings,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> OverallScore | None:
    """Weighted mean of the primary scores; the CI resamples each use case's examples independently."""
    scored = [result for result in results if result.scores]
    if not scored:
        return None
    weights = normalised_weights([r.use_case for r in scored], settings)
    mean = sum(weights[r.use_case] * (r.mean or 0.0) for r in scored)
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for result in scored:
        values = np.asarray(result.scores, dtype=float)
        picks = rng.integers(0, len(values), size=(resamples, len(values)))
        totals += weights[result.use_case] * values[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(totals, [tail, 100 - tail])
    return OverallScore(float(mean), float(low), float(high), confidence, weights)


def decide(results: Sequence[UseCaseResult], overall: OverallScore | None, settings: BenchmarkSettings) -> Verdict:
    """PASS / FAIL for one model on one device, with a reason for every failed check."""
    reasons: list[str] = []
    checks: list[dict[str, Any]] = []
    for result in results:
        requirement = settings.use_cases.get(result.use_case)
        checks.extend(_use_case_checks(result, requirement))
    if overall is not None:
        checks.append(
            {
                "use_case": "overall",
                "check": "overall score",
                "value": overall.mean,
                "limit": settings.overall_min_score,
                "passed": overall.mean >= settings.overall_min_score,
            }
        )
    for check in checks:
        if not check["passed"]:
            reasons.append(_reason(check))
    return Verdict(passed=not reasons, reasons=tuple(reasons), checks=tuple(checks))


def _use_case_checks(result: UseCaseResult, requirement: UseCaseRequirements | None) -> list[dict[str, Any]]:
    name = result.use_case
    checks: list[dict[str, Any]] = [
        {
            "use_case": name,
            "check": "fits in memory",
            "value": result.fits,
            "limit": True,
            "passed": result.fits,
            "note": result.fits_reason,
        }
    ]
    if not result.fits or requirement is None:
        return checks
    mean = result.mean
    checks.append(
        {
            "use_case": name,
            "check": f"{result.primary} at least",
            "value": mean,
            "limit": requirement.min_score,
            "passed": mean is not None and mean >= requirement.min_score,
        }
    )
    for figure, limit in requirement.corpus_max.items():
        value = result.corpus.get(figure)
        checks.append(
            {
                "use_case": name,
                "check": f"{figure} at most",
                "value": value,
                "limit": limit,
                "passed": value is not None and value <= limit,
            }
        )
    for figure, limit in requirement.corpus_min.items():
        value = result.corpus.get(figure)
        checks.append(
            {
                "use_case": name,
                "check": f"{figure} at least",
                "value": value,
                "limit": limit,
                "passed": value is not None and value >= limit,
            }
        )
    latency = result.latency_p90_ms
    checks.append(
        {
            "use_case": name,
            "check": f"p90 latency at most (ms, {result.latency_label})",
            "value": latency,
            "limit": requirement.latency_p90_ms,
            "passed": latency is not None and latency <= requirement.latency_p90_ms,
        }
    )
    return checks


def _reason(check: Mapping[str, Any]) -> str:
    value = check["value"]
    shown = fmt(value)
    if check["check"] == "fits in memory":
        return f"{check['use_case']}: does not fit ({check.get('note') or 'out of memory'})"
    return f"{check['use_case']}: {check['check']} {check['limit']:g}, got {shown}"


def latency_p90_for_device(summary: Mapping[str, Any], device: str) -> tuple[float | None, str]:
    """The p90 end-to-end latency a device would show: measured on ``host``, projected elsewhere."""
    latency = summary.get("metrics", {}).get("latency", {})
    end_to_end = latency.get("end_to_end") or {}
    measured = end_to_end.get("p90")
    label = str(end_to_end.get("label", "measured"))
    if measured is None or device == "host":
        return measured, label
    projection = latency.get("projection")
    prompt_speed = (latency.get("prompt_tokens_per_s") or {}).get("p50")
    decode_speed = (latency.get("decode_tokens_per_s") or {}).get("p50")
    if not projection or not prompt_speed or not decode_speed:
        return measured, f"{label}, not projected"
    host_ms = (projection["prompt_tokens"] / prompt_speed + projection["output_tokens"] / decode_speed) * 1000
    device_ms = projection["request_latency"]["value"]
    if not host_ms or device_ms is None:
        return measured, f"{label}, not projected"
    return float(measured) * device_ms / host_ms, "projected"
