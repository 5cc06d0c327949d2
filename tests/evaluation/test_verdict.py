"""The benchmark's decision from fixed figures: the weighted overall score and its CI, PASS / FAIL, device latency."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from slm_eval.evaluation.benchmark_settings import BenchmarkSettings, UseCaseRequirements
from slm_eval.evaluation.verdict import (
    OverallScore,
    UseCaseResult,
    decide,
    latency_p90_for_device,
    normalised_weights,
    overall_score,
)

DEFAULTS = BenchmarkSettings()


def _result(use_case: str = "document-verification", **overrides: Any) -> UseCaseResult:
    """A use case result that meets the default requirements of document verification."""
    result = UseCaseResult(
        use_case=use_case,
        primary="decision",
        scores=(1.0, 1.0, 1.0, 1.0),
        corpus={"false_accept_rate": 0.0, "decision_accuracy": 1.0},
        fits=True,
        fits_reason=None,
        latency_p90_ms=1500.0,
        latency_label="measured",
        valid=True,
    )
    return replace(result, **overrides)


# --- overall score -------------------------------------------------------------------------------------


def test_overall_score_is_the_weighted_mean_over_the_use_cases_present() -> None:
    results = [
        _result("document-verification", scores=(1.0, 1.0, 0.0, 1.0)),  # mean 0.75, weight 0.25
        _result("customs-help", primary="score", scores=(0.0, 1.0)),  # mean 0.5, weight 0.15
        _result("multilingual-triage", primary="chrf", scores=(), fits=False),  # nothing scored: left out
    ]
    overall = overall_score(results, DEFAULTS, resamples=500, seed=3)
    assert overall is not None
    assert overall.weights == pytest.approx({"document-verification": 0.25 / 0.4, "customs-help": 0.15 / 0.4})
    assert overall.mean == pytest.approx(0.625 * 0.75 + 0.375 * 0.5)  # 0.65625
    assert overall.low <= overall.mean <= overall.high
    assert 0.0 <= overall.low < overall.high <= 1.0
    assert overall.confidence == 0.95
    data = overall.to_dict()
    assert data["mean"] == overall.mean and data["unit"] == "score (0-1)" and data["label"] == "measured"


def test_normalised_weights_sum_to_one_for_any_subset() -> None:
    weights = normalised_weights(["entity-threat-detection", "report-generation", "customs-help"], DEFAULTS)
    assert weights == pytest.approx(
        {"entity-threat-detection": 0.2 / 0.55, "report-generation": 0.2 / 0.55, "customs-help": 0.15 / 0.55}
    )
    assert sum(weights.values()) == pytest.approx(1.0)


def test_one_use_case_alone_has_weight_one() -> None:
    overall = overall_score([_result(scores=(0.2, 0.4, 0.6))], DEFAULTS)
    assert overall is not None
    assert overall.weights == {"document-verification": 1.0}
    assert overall.mean == pytest.approx(0.4)


def test_identical_scores_give_a_zero_width_interval() -> None:
    overall = overall_score([_result(scores=(0.5,) * 10), _result("customs-help", scores=(0.5,) * 7)], DEFAULTS)
    assert overall is not None
    assert overall.low == pytest.approx(0.5) and overall.high == pytest.approx(0.5) and overall.mean == 0.5


def test_nothing_scored_has_no_overall_score() -> None:
    assert overall_score([], DEFAULTS) is None
    assert overall_score([_result(scores=(), fits=False)], DEFAULTS) is None


def test_the_interval_is_deterministic_for_a_seed() -> None:
    results = [_result(scores=(1.0, 0.0, 1.0, 0.0, 1.0)), _result("customs-help", scores=(0.3, 0.9, 0.6))]
    first = overall_score(results, DEFAULTS, resamples=400, seed=7)
    again = overall_score(results, DEFAULTS, resamples=400, seed=7)
    other = overall_score(results, DEFAULTS, resamples=400, seed=8)
    assert first == again
    assert first is not None and other is not None
    assert other.mean == first.mean  # the point estimate does not depend on the seed
    assert (other.low, other.high) != (first.low, first.high)


def test_the_interval_narrows_with_more_examples() -> None:
    few = overall_score([_result(scores=(1.0, 0.0) * 5)], DEFAULTS, resamples=1000, seed=0)
    many = overall_score([_result(scores=(1.0, 0.0) * 200)], DEFAULTS, resamples=1000, seed=0)
    assert few is not None and many is not None
    assert few.mean == many.mean == pytest.approx(0.5)
    assert many.high - many.low < (few.high - few.low) / 3
    assert many.low <= 0.5 <= many.high


def test_a_narrower_confidence_gives_a_narrower_interval() -> None:
    results = [_result(scores=(1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0))]
    wide = overall_score(results, DEFAULTS, confidence=0.95, seed=1)
    narrow = overall_score(results, DEFAULTS, confidence=0.5, seed=1)
    assert wide is not None and narrow is not None
    assert narrow.high - narrow.low < wide.high - wide.low


# --- PASS / FAIL ---------------------------------------------------------------------------------------


def test_every_check_met_passes() -> None:
    results = [_result(), _result("customs-help", primary="score", scores=(0.8, 0.9), corpus={}, latency_p90_ms=4000)]
    overall = overall_score(results, DEFAULTS)
    verdict = decide(results, overall, DEFAULTS)
    assert verdict.passed, verdict.reasons
    assert verdict.reasons == ()
    assert all(check["passed"] for check in verdict.checks)
    names = [(check["use_case"], check["check"]) for check in verdict.checks]
    assert names == [
        ("document-verification", "fits in memory"),
        ("document-verification", "decision at least"),
        ("document-verification", "false_accept_rate at most"),
        ("document-verification", "p90 latency at most (ms, measured)"),
        ("customs-help", "fits in memory"),
        ("customs-help", "score at least"),
        ("customs-help", "p90 latency at most (ms, measured)"),
        ("overall", "overall score"),
    ]
    assert verdict.to_dict()["verdict"] == "PASS"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"scores": (1.0, 1.0, 0.0, 1.0)}, "document-verification: decision at least 0.9, got 0.75"),
        ({"scores": ()}, "document-verification: decision at least 0.9, got n/a"),
        ({"corpus": {"false_accept_rate": 0.25}}, "document-verification: false_accept_rate at most 0.05, got 0.25"),
        ({"corpus": {}}, "document-verification: false_accept_rate at most 0.05, got n/a"),
        ({"latency_p90_ms": 2500.0}, "document-verification: p90 latency at most (ms, measured) 2000, got 2500"),
        (
            {"latency_p90_ms": 3100.0, "latency_label": "projected"},
            "document-verification: p90 latency at most (ms, projected) 2000, got 3100",
        ),
        ({"latency_p90_ms": None}, "document-verification: p90 latency at most (ms, measured) 2000, got n/a"),
    ],
    ids=["score", "no-score", "false-accepts", "corpus-missing", "latency", "latency-projected", "latency-missing"],
)
def test_each_failed_check_fails_with_its_reason(overrides: dict[str, Any], reason: str) -> None:
    result = _result(**overrides)
    overall = OverallScore(0.95, 0.9, 1.0, 0.95, {"document-verification": 1.0})
    verdict = decide([result], overall, DEFAULTS)
    assert not verdict.passed
    assert verdict.reasons == (reason,)
    assert verdict.to_dict() == {"verdict": "FAIL", "reasons": [reason], "checks": list(verdict.checks)}


def test_a_model_that_does_not_fit_fails_on_that_alone() -> None:
    result = _result(scores=(), fits=False, fits_reason="the weights alone take 900 MiB, more than the 512 MiB of tiny")
    verdict = decide([result], None, DEFAULTS)
    assert not verdict.passed
    assert verdict.reasons == (
        "document-verification: does not fit (the weights alone take 900 MiB, more than the 512 MiB of tiny)",
    )
    assert [check["check"] for check in verdict.checks] == ["fits in memory"]  # nothing else is judged


def test_not_fitting_without_a_reason_says_out_of_memory() -> None:
    verdict = decide([_result(scores=(), fits=False)], None, DEFAULTS)
    assert verdict.reasons == ("document-verification: does not fit (out of memory)",)


def test_an_overall_score_below_the_threshold_fails_even_when_each_use_case_passes() -> None:
    settings = BenchmarkSettings(
        use_cases={"document-verification": UseCaseRequirements(weight=1, latency_p90_ms=2000, min_score=0.5)},
        overall_min_score=0.9,
    )
    result = _result(scores=(1.0, 1.0, 1.0, 0.0, 1.0))
    overall = overall_score([result], settings)
    assert overall is not None and overall.mean == pytest.approx(0.8)
    verdict = decide([result], overall, settings)
    assert not verdict.passed
    assert verdict.reasons == ("overall: overall score 0.9, got 0.8",)


def test_a_corpus_minimum_is_checked() -> None:
    settings = BenchmarkSettings(
        use_cases={
            "document-verification": UseCaseRequirements(
                weight=1, latency_p90_ms=2000, min_score=0.5, corpus_min={"decision_accuracy": 0.95}
            )
        },
        overall_min_score=0.0,
    )
    verdict = decide([_result(corpus={"decision_accuracy": 0.6})], None, settings)
    assert verdict.reasons == ("document-verification: decision_accuracy at least 0.95, got 0.6",)


def test_several_failures_give_one_reason_each() -> None:
    results = [
        _result(scores=(0.0, 1.0), latency_p90_ms=2400.0),
        _result("customs-help", primary="score", scores=(0.0, 0.0), corpus={}, latency_p90_ms=100.0),
    ]
    overall = overall_score(results, DEFAULTS)
    verdict = decide(results, overall, DEFAULTS)
    assert not verdict.passed
    assert verdict.reasons == (
        "document-verification: decision at least 0.9, got 0.5",
        "document-verification: p90 latency at most (ms, measured) 2000, got 2400",
        "customs-help: score at least 0.6, got 0",
        "overall: overall score 0.7, got 0.312",
    )


# --- latency on a device -------------------------------------------------------------------------------


def _summary(**latency: Any) -> dict[str, Any]:
    """A summary whose host request is 1000 ms: 200 prompt tokens at 400 tokens/s + 10 at 20 tokens/s."""
    section: dict[str, Any] = {
        "end_to_end": {"p50": 400.0, "p90": 500.0, "unit": "ms", "label": "measured"},
        "prompt_tokens_per_s": {"p50": 400.0, "unit": "tokens/s", "label": "measured"},
        "decode_tokens_per_s": {"p50": 20.0, "unit": "tokens/s", "label": "measured"},
        "projection": {
            "prompt_tokens": 200,
            "output_tokens": 10,
            "request_latency": {"value": 2500.0, "unit": "ms", "label": "projected"},
        },
    }
    section.update(latency)
    return {"metrics": {"latency": section}}


def test_host_latency_is_the_measured_p90() -> None:
    assert latency_p90_for_device(_summary(), "host") == (500.0, "measured")


def test_another_device_scales_the_measured_p90_by_the_projection() -> None:
    # host request: (200 / 400 + 10 / 20) s = 1000 ms; device request 2500 ms; so 500 ms x 2.5
    value, label = latency_p90_for_device(_summary(), "docker-sim")
    assert value == pytest.approx(1250.0)
    assert label == "projected"


def test_a_faster_device_shortens_the_latency() -> None:
    summary = _summary(
        projection={"prompt_tokens": 100, "output_tokens": 40, "request_latency": {"value": 750.0}},
        prompt_tokens_per_s={"p50": 500.0},
        decode_tokens_per_s={"p50": 50.0},
    )
    # host request: (100 / 500 + 40 / 50) s = 1000 ms; device 750 ms
    value, label = latency_p90_for_device(summary, "jetson-orin-nano")
    assert value == pytest.approx(375.0)
    assert label == "projected"


@pytest.mark.parametrize(
    "latency",
    [
        {"projection": None},
        {"decode_tokens_per_s": None},
        {"prompt_tokens_per_s": {"p50": 0.0}},
        {"projection": {"prompt_tokens": 200, "output_tokens": 10, "request_latency": {"value": None}}},
    ],
    ids=["no-projection", "no-decode-speed", "zero-prompt-speed", "no-device-latency"],
)
def test_without_a_projection_the_measured_value_is_kept_and_labelled(latency: dict[str, Any]) -> None:
    assert latency_p90_for_device(_summary(**latency), "docker-sim") == (500.0, "measured, not projected")


def test_the_fake_backends_scripted_latency_keeps_its_label() -> None:
    summary = _summary(end_to_end={"p90": 355.0, "label": "scripted"}, projection=None)
    assert latency_p90_for_device(summary, "host") == (355.0, "scripted")
    assert latency_p90_for_device(summary, "docker-sim") == (355.0, "scripted, not projected")


def test_no_latency_measured() -> None:
    assert latency_p90_for_device({"metrics": {}}, "docker-sim") == (None, "measured")
    assert latency_p90_for_device({}, "host") == (None, "measured")
