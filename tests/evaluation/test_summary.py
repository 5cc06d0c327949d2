"""summary.json from hand-made records: which records count, hand-computed figures, and honest labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from slm_eval.devices.profiles import HOST_PROFILE, KNOWN_METRICS
from slm_eval.devices.sandbox import SandboxLimits, WorkerOutcome
from slm_eval.evaluation.plan import RunSettings
from slm_eval.evaluation.runner import SessionResult
from slm_eval.evaluation.summary import (
    HostPerformanceSource,
    accuracy_metric,
    latency_metric,
    latest_scored,
    robustness_metric,
    summarize,
)
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard
from tests.fake_runs import MIB, packaged_config

CARD: ModelCard = default_registry().resolve("smollm2-135m-instruct")
DOCKER_SIM = packaged_config().profiles["docker-sim"]


def _settings(**overrides: Any) -> RunSettings:
    config = packaged_config()
    settings = RunSettings(
        run_id="20260101-000000-smollm2-135m-instruct-abcd",
        model=CARD.name,
        backend=None,
        dataset=None,
        task="border-qa",
        limit=3,
        seed=0,
        metrics=KNOWN_METRICS,
        device=DOCKER_SIM,
        max_new_tokens=16,
        threads=None,
        context_length=2048,
        validity=config.validity,
        robustness_rate=0.1,
        perturbations=("typos", "ocr"),
        bootstrap_resamples=200,
    )
    return replace(settings, **overrides)


def _record(session: int, kind: str, example: str, perturbation: str = "clean", **fields: Any) -> dict[str, Any]:
    variant = {"warmup": "0", "timing": "0"}.get(kind, perturbation)
    record = {
        "schema_version": 1,
        "session": session,
        "kind": kind,
        "key": f"{kind}|{example}|{variant}",
        "example_id": example,
        "perturbation": perturbation,
        "output": "an answer",
        "scores": None,
        "prompt_tokens": 100,
        "output_tokens": 10,
        "ttft_ms": 50.0,
        "tpot_ms": 10.0,
        "e2e_ms": 500.0,
        "prompt_tps": 2000.0,
        "decode_tps": 100.0,
        "cpu_s": 0.1,
    }
    record.update(fields)
    return record


def _scored(session: int, example: str, f1: float, perturbation: str = "clean", **fields: Any) -> dict[str, Any]:
    return _record(session, "eval", example, perturbation, scores={"f1": f1, "exact_match": float(f1 == 1)}, **fields)


def _outcome(**overrides: Any) -> WorkerOutcome:
    outcome = WorkerOutcome(
        exit_code=0,
        signal=None,
        sandbox="process",
        memory_enforcement="cgroup-v1",
        limits=SandboxLimits(cpus=(0, 1), memory_bytes=2048 * MIB, threads=2),
        read_back={"affinity": [0, 1], "rlimit_as": None, "cgroup_memory_limit": 2048 * MIB},
        peak_rss_bytes=200 * MIB,
        sampled_peak_rss_bytes=190 * MIB,
        memory_samples=[(0.0, 20 * MIB), (0.5, 190 * MIB)],
    )
    for key, value in overrides.items():
        setattr(outcome, key, value)
    return outcome


def _session(session: int = 1, **overrides: Any) -> SessionResult:
    result = SessionResult(
        session=session,
        outcome=_outcome(),
        loaded={"backend": "llamacpp", "parameters": 134_515_008, "rss_before": 20 * MIB, "rss_after": 120 * MIB},
        weights_bytes=94 * MIB,
        sandbox_note="no Docker engine reachable; the limits apply to a local worker process",
    )
    for key, value in overrides.items():
        setattr(result, key, value)
    return result


def _two_sessions() -> list[dict[str, Any]]:
    """Session 0 (killed): a warm-up, two clean answers with old, slow timings, one perturbed answer.

    Session 1 (resumed): a warm-up, the last clean answer, four timing top-ups, the other perturbed answers.
    """
    slow: dict[str, Any] = {"e2e_ms": 9000.0, "tpot_ms": 90.0, "decode_tps": 11.0, "cpu_s": 9.0}
    return [
        _record(0, "warmup", "a", **slow),
        _scored(0, "a", 1.0, **slow),
        _scored(0, "b", 0.5, **slow),
        _scored(0, "a", 0.5, "typos", **slow),
        _record(1, "warmup", "a"),
        _scored(1, "c", 0.0),
        *(_record(1, "timing", example) for example in ("a", "b", "c", "a")),
        _scored(1, "b", 0.5, "typos"),
        _scored(1, "c", 0.0, "typos"),
        _scored(1, "a", 1.0, "ocr"),
    ]


def _figures(data: object, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict with a ``label`` in a summary, with where it is."""
    if isinstance(data, dict):
        if "label" in data and isinstance(data["label"], str):
            yield path, data
        for key, value in data.items():
            yield from _figures(value, f"{path}.{key}")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _figures(value, f"{path}[{index}]")


# --- pieces ------------------------------------------------------------------------------------------


def test_latest_scored_keeps_one_record_per_question_and_variant() -> None:
    records = [
        _scored(0, "a", 0.0),
        _record(0, "warmup", "a", scores=None),
        _record(0, "timing", "a"),
        _record(0, "eval", "b", scores=None),  # an output without scores does not count
        _scored(1, "a", 1.0),
        _scored(1, "a", 0.25, "typos"),
    ]
    table = latest_scored(records)
    assert set(table) == {("a", "clean"), ("a", "typos")}
    assert table[("a", "clean")]["scores"]["f1"] == 1.0
    assert table[("a", "clean")]["session"] == 1


def test_accuracy_uses_clean_answers_only_with_unit_and_label() -> None:
    scored = latest_scored(
        [_scored(0, "a", 1.0), _scored(0, "b", 0.0), _scored(0, "c", 0.5), _scored(0, "a", 0.0, "ocr")]
    )
    accuracy = accuracy_metric(scored, _settings())
    assert list(accuracy) == ["f1", "exact_match"]
    f1 = accuracy["f1"]
    assert f1["mean"] == pytest.approx(0.5)
    assert f1["n"] == 3
    assert f1["low"] <= f1["mean"] <= f1["high"]
    assert (f1["unit"], f1["label"], f1["confidence"]) == ("score (0-1)", "measured", 0.95)
    assert accuracy["exact_match"]["mean"] == pytest.approx(1 / 3)
    assert accuracy_metric({}, _settings()) == {}


def test_robustness_is_the_drop_from_the_same_clean_examples() -> None:
    records = [
        _scored(0, "a", 1.0),
        _scored(0, "b", 1.0),
        _scored(0, "c", 0.0),
        _scored(0, "a", 0.5, "typos"),
        _scored(0, "b", 1.0, "typos"),
        _scored(0, "z", 0.0, "typos"),  # no clean answer for z: not paired
    ]
    robustness = robustness_metric(latest_scored(records), _settings())
    assert robustness["rate"] == 0.1 and robustness["score"] == "f1"
    assert list(robustness["perturbations"]) == ["typos"]  # no ocr answers yet
    typos = robustness["perturbations"]["typos"]
    assert typos["n"] == 2
    assert typos["clean_score"] == pytest.approx(1.0)
    assert typos["perturbed_score"] == pytest.approx(0.75)
    assert typos["drop"] == pytest.approx(0.25)
    assert typos["relative_drop"] == pytest.approx(0.25)
    assert typos["label"] == "measured"


def test_latency_distributions_with_units() -> None:
    timed = [_record(0, "eval", str(i), e2e_ms=float(100 * (i + 1)), ttft_ms=None) for i in range(5)]
    latency = latency_metric(timed)
    assert latency["requests"] == 5
    e2e = latency["end_to_end"]
    assert (e2e["n"], e2e["mean"], e2e["p50"], e2e["min"], e2e["max"]) == (5, 300.0, 300.0, 100.0, 500.0)
    assert e2e["p90"] == pytest.approx(460.0)
    assert (e2e["unit"], e2e["label"]) == ("ms", "measured")
    assert latency["time_to_first_token"] is None  # no values: no figure, not a zero
    assert latency["decode_tokens_per_s"]["unit"] == "tokens/s"


# --- summarize ---------------------------------------------------------------------------------------


def test_a_resumed_summary_scores_every_session_but_times_only_the_last() -> None:
    summary = summarize(_settings(), CARD, _two_sessions(), _session(1))
    assert summary["sessions"] == 2
    assert summary["task"]["examples"] == 3
    assert summary["metrics"]["accuracy"]["f1"]["n"] == 3
    assert summary["metrics"]["accuracy"]["f1"]["mean"] == pytest.approx(0.5)
    latency = summary["metrics"]["latency"]
    assert latency["requests"] == 5  # session 1: one clean answer and four timing top-ups
    assert latency["end_to_end"]["max"] == 500.0  # none of session 0's 9000 ms
    assert latency["decode_tokens_per_s"]["min"] == 100.0
    timing = summary["metrics"]["inference_time"]
    assert timing["examples"] == 1
    assert timing["task_total"] == {"value": 0.5, "unit": "s", "label": "measured"}
    robustness = summary["metrics"]["robustness"]["perturbations"]
    assert robustness["typos"]["n"] == 3 and robustness["ocr"]["n"] == 1
    assert summary["validity"] == {"valid": True, "reasons": []}


def test_power_on_a_simulated_profile_is_estimated_by_hand() -> None:
    summary = summarize(_settings(), CARD, _two_sessions(), _session(1))
    power = summary["metrics"]["power"]
    # Timed requests of session 1: 5 x 0.5 s wall, 5 x 0.1 s CPU, on 2 cores: utilisation 0.5 / (2.5 x 2) = 0.1.
    # E = idle 3 W x 2.5 s + (8 - 3) W x 0.1 x 2.5 s = 7.5 + 1.25 = 8.75 J.
    assert power["energy_total"] == {"value": pytest.approx(8.75), "unit": "J", "label": "estimated"}
    assert power["energy_per_request"] == {"value": pytest.approx(1.75), "unit": "J", "label": "estimated"}
    assert power["average_power"] == {"value": pytest.approx(3.5), "unit": "W", "label": "estimated"}
    assert power["cpu_s"] == pytest.approx(0.5)
    assert "estimated" in power["method"]


def test_a_host_energy_reading_is_never_given_to_a_simulated_profile() -> None:
    session = _session(1, measured_joules=100.0, energy_wall_s=2.5)
    power = summarize(_settings(), CARD, _two_sessions(), session)["metrics"]["power"]
    assert {figure["label"] for figure in power.values() if isinstance(figure, dict)} == {"estimated"}
    assert power["energy_total"]["value"] == pytest.approx(8.75)


def test_power_on_the_host_is_measured_when_a_counter_was_read() -> None:
    session = _session(1, measured_joules=10.0, energy_wall_s=5.0)
    summary = summarize(_settings(device=HOST_PROFILE), CARD, _two_sessions(), session)
    power = summary["metrics"]["power"]
    # The counter covered 5 s of worker time; the timed requests took 2.5 s of it: 10 J x 2.5 / 5 = 5 J.
    assert power["energy_total"] == {"value": pytest.approx(5.0), "unit": "J", "label": "measured"}
    assert power["energy_per_request"]["value"] == pytest.approx(1.0)
    assert power["method"] == "RAPL/NVML energy counter"


def test_power_on_the_host_without_a_counter_has_no_value_and_no_measured_label() -> None:
    summary = summarize(_settings(device=HOST_PROFILE), CARD, _two_sessions(), _session(1))
    power = summary["metrics"]["power"]
    assert power["energy_per_request"] == {"value": None, "unit": "J", "label": "estimated"}
    assert power["method"].startswith("not available")


def test_every_figure_has_a_unit_and_an_honest_label() -> None:
    host = HostPerformanceSource(bandwidth_gbs=20.0, peak_gflops=100.0)
    summary = summarize(_settings(), CARD, _two_sessions(), _session(1), host)
    assert set(summary["metrics"]) == set(KNOWN_METRICS)
    figures = dict(_figures(summary["metrics"]))
    assert figures, "the summary has labelled figures"
    for where, figure in figures.items():
        assert figure["label"] in {"measured", "estimated", "projected"}, where
        if "value" in figure or "mean" in figure:
            assert figure.get("unit"), where
        if where.startswith(".power."):
            assert figure["label"] == "estimated", where
    projection = summary["metrics"]["latency"]["projection"]
    assert projection["device"] == "docker-sim"
    for name in ("decode_tokens_per_s", "prompt_tokens_per_s", "time_per_output_token", "request_latency"):
        assert projection[name]["label"] == "projected", name
    assert projection["host_memory_bandwidth"] == {"value": 20.0, "unit": "GB/s", "label": "measured"}


def test_memory_and_size_figures() -> None:
    summary = summarize(_settings(), CARD, _two_sessions(), _session(1))
    memory = summary["metrics"]["memory"]
    assert memory["method"].startswith("kernel peak: ")
    assert memory["peak_rss_kernel"] == {"value": 200.0, "unit": "MiB", "label": "measured"}
    assert memory["peak_rss_sampled"]["value"] == 190.0
    assert memory["load_memory"] == {"value": 100.0, "unit": "MiB", "label": "measured"}
    assert memory["samples"] == 2
    size = summary["metrics"]["model_size"]
    assert size["on_disk"] == {"value": 94.0, "unit": "MiB", "label": "measured"}
    assert size["on_disk_bytes"] == 94 * MIB
    assert size["parameters"] == 134_515_008


def test_the_device_section_says_how_limits_were_applied() -> None:
    device = summarize(_settings(), CARD, _two_sessions(), _session(1))["device"]
    assert device["profile"]["name"] == "docker-sim"
    assert device["sandbox"] == "process"
    assert device["memory_enforcement"] == "cgroup-v1"
    assert device["limits"] == {"cpus": [0, 1], "memory_bytes": 2048 * MIB, "threads": 2, "note": None}
    assert device["read_back_in_worker"]["cgroup_memory_limit"] == 2048 * MIB
    assert device["sandbox_note"] == "no Docker engine reachable; the limits apply to a local worker process"


def test_a_model_that_does_not_fit_has_a_reason_and_no_timings() -> None:
    reason = "the weights alone take 94 MiB, more than the 64 MiB of tiny"
    session = SessionResult(session=0, outcome=None, fits=False, fits_reason=reason, weights_bytes=94 * MIB)
    summary = summarize(_settings(), CARD, [], session)
    assert summary["fits"] == {"fits": False, "reason": reason}
    assert summary["validity"] == {"valid": False, "reasons": [reason]}
    assert list(summary["metrics"]) == ["model_size"]
    assert summary["device"]["sandbox"] is None
    assert summary["sessions"] == 1


def test_too_few_timed_requests_make_the_run_invalid() -> None:
    records = [_record(0, "warmup", "a"), _scored(0, "a", 1.0), _scored(0, "b", 1.0)]
    summary = summarize(_settings(), CARD, records, _session(0))
    assert summary["validity"]["valid"] is False
    assert "2 timed requests, fewer than the minimum of 5" in summary["validity"]["reasons"]
    assert summary["metrics"]["latency"]["requests"] == 2  # the warm-up is not counted


def test_timings_of_the_fake_backend_are_labelled_scripted() -> None:
    session = _session(1, loaded={"backend": "fake", "parameters": None})
    summary = summarize(_settings(backend="fake"), CARD, _two_sessions(), session)
    latency = summary["metrics"]["latency"]
    assert {latency[name]["label"] for name in ("time_to_first_token", "end_to_end", "decode_tokens_per_s")} == {
        "scripted"
    }
    assert summary["metrics"]["inference_time"]["task_total"]["label"] == "scripted"
    assert summary["metrics"]["inference_time"]["per_example"]["label"] == "scripted"
    assert summary["metrics"]["accuracy"]["f1"]["label"] == "measured"  # scores are real, whatever the backend
