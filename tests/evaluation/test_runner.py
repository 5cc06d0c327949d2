"""The runner end to end on the fake backend: records, warm-up, summary, a model that does not fit, resume."""

from __future__ import annotations

import collections
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from slm_eval.devices.profiles import KNOWN_METRICS, KNOWN_PERTURBATIONS
from slm_eval.errors import UserError
from slm_eval.evaluation.evaluate import EvaluateOutcome, execute, new_run, plan_run, resumed_run
from slm_eval.evaluation.plan import RunSettings
from slm_eval.evaluation.runner import RunContext, run_session
from slm_eval.results import records as records_module
from slm_eval.results.records import RunPaths, read_json, read_records
from slm_eval.tasks.squad import resolve_task, select_examples
from tests.devices.test_sandbox import needs_cgroup
from tests.fake_runs import (
    MIB,
    config_with_profile,
    fake_request,
    packaged_config,
    records_of,
    run_fake,
    write_qa_jsonl,
)

LIMIT = 4


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> EvaluateOutcome:
    """Every metric on docker-sim, four examples: 1 warm-up, 4 clean, 1 timing top-up, 4 x 5 perturbed."""
    return run_fake(tmp_path_factory.mktemp("results"), limit=LIMIT)


def test_records_hold_one_scored_answer_per_example_and_perturbation(full_run: EvaluateOutcome) -> None:
    records = records_of(full_run.paths)
    scored = collections.Counter((r["example_id"], r["perturbation"]) for r in records if r["kind"] == "eval")
    examples = {example for example, _ in scored}
    assert len(examples) == LIMIT
    assert set(scored) == {(e, p) for e in examples for p in ("clean", *KNOWN_PERTURBATIONS)}
    assert set(scored.values()) == {1}
    assert len(records) == 1 + LIMIT + 1 + LIMIT * len(KNOWN_PERTURBATIONS)


def test_every_record_says_what_it_is(full_run: EvaluateOutcome) -> None:
    run_id = full_run.summary["run_id"]
    for record in records_of(full_run.paths):
        assert record["schema_version"] == 1
        assert record["run_id"] == run_id
        assert record["session"] == 0
        assert record["output"].startswith("(dry run) smollm2-135m-instruct received")
        assert record["e2e_ms"] > 0 and record["output_tokens"] >= 1
        if record["kind"] == "eval":
            assert set(record["scores"]) == {"f1", "exact_match"}
        else:
            assert record["scores"] is None


def test_warm_up_comes_first_and_is_not_timed(full_run: EvaluateOutcome) -> None:
    records = records_of(full_run.paths)
    assert [r["kind"] for r in records[:1]] == ["warmup"]
    assert sum(r["kind"] == "warmup" for r in records) == 1
    assert sum(r["kind"] == "timing" for r in records) == 1  # 4 clean answers, at least 5 timed requests
    latency = full_run.summary["metrics"]["latency"]
    assert latency["requests"] == 5
    assert latency["end_to_end"]["n"] == 5
    timed_keys = [r["e2e_ms"] for r in records if r["kind"] in ("eval", "timing") and r["perturbation"] == "clean"]
    assert latency["end_to_end"]["mean"] == pytest.approx(sum(timed_keys) / 5)


def test_the_run_folder_holds_its_plan_and_memory_samples(full_run: EvaluateOutcome) -> None:
    settings = RunSettings.from_dict(read_json(full_run.paths.run_file))
    assert settings.run_id == full_run.summary["run_id"]
    assert settings.metrics == KNOWN_METRICS
    assert settings.device.name == "docker-sim"
    samples = list(read_records(full_run.paths.memory))
    assert samples and all(s["session"] == 0 for s in samples)
    assert samples[0]["rss_bytes"] > 0 and samples[0]["t_s"] >= 0
    assert read_json(full_run.paths.summary) == full_run.summary


def test_the_summary_has_every_metric_with_units_and_labels(full_run: EvaluateOutcome) -> None:
    summary = full_run.summary
    assert summary["schema_version"] == 1
    assert summary["model"]["name"] == "smollm2-135m-instruct"
    assert summary["model"]["backend"] == "fake"
    assert summary["task"] == {
        "name": "border-qa",
        "dataset": None,
        "limit": LIMIT,
        "seed": 0,
        "examples": LIMIT,
        "prefix_cache": False,
        "primary_score": "f1",
        "corpus": {},
        "parse_errors": 0,
    }
    assert summary["fits"] == {"fits": True, "reason": None}
    assert summary["host"]["python"]
    assert summary["config"]["device"]["name"] == "docker-sim"
    metrics = summary["metrics"]
    assert set(metrics) == set(KNOWN_METRICS)
    for name in ("f1", "exact_match"):
        assert (metrics["accuracy"][name]["unit"], metrics["accuracy"][name]["label"]) == ("score (0-1)", "measured")
        assert metrics["accuracy"][name]["n"] == LIMIT
    for name in ("time_to_first_token", "time_per_output_token", "end_to_end"):
        assert metrics["latency"][name]["unit"] == "ms"
    assert metrics["memory"]["peak_rss_kernel"]["unit"] == "MiB"
    assert metrics["memory"]["peak_rss_kernel"]["value"] > 0
    assert metrics["inference_time"]["task_total"]["unit"] == "s"
    assert metrics["inference_time"]["examples"] == LIMIT
    assert set(metrics["robustness"]["perturbations"]) == set(KNOWN_PERTURBATIONS)
    for name in ("energy_total", "energy_per_request", "average_power"):
        assert metrics["power"][name]["label"] == "estimated", name  # docker-sim is simulated: never measured
        assert metrics["power"][name]["value"] > 0
    assert metrics["power"]["energy_per_request"]["unit"] == "J"
    assert metrics["power"]["average_power"]["unit"] == "W"


def test_the_sandbox_applied_the_profile(full_run: EvaluateOutcome) -> None:
    device = full_run.summary["device"]
    assert device["sandbox"] == "process"
    assert device["memory_enforcement"] in ("cgroup-v1", "rlimit-as")
    assert device["limits"]["memory_bytes"] == 2048 * MIB
    read_back = device["read_back_in_worker"]
    assert read_back["affinity"] == device["limits"]["cpus"]
    key = "cgroup_memory_limit" if device["memory_enforcement"] == "cgroup-v1" else "rlimit_as"
    assert read_back[key] == 2048 * MIB
    assert device["memory_limit_hit"] is False


def test_progress_is_reported_for_every_request(tmp_path: Path) -> None:
    settings, card = plan_run(fake_request(limit=2, metrics=["accuracy"]), packaged_config())
    paths = RunPaths(tmp_path / settings.run_id)
    calls: list[tuple[int, int]] = []
    task = resolve_task(None)
    context = RunContext(paths=paths, cache_dir=tmp_path / "cache", on_progress=lambda d, t: calls.append((d, t)))
    session = run_session(settings, card, task, select_examples(task.examples(), 2, 0), context)
    assert calls == [(1, 3), (2, 3), (3, 3)]  # a warm-up and two answers
    assert session.session == 0 and session.fits is True
    assert session.loaded["backend"] == "fake"


def test_only_the_selected_metrics_are_computed(tmp_path: Path) -> None:
    outcome = run_fake(tmp_path, limit=2, metrics=["accuracy", "model_size"])
    assert set(outcome.summary["metrics"]) == {"accuracy", "model_size"}
    assert {r["perturbation"] for r in records_of(outcome.paths)} == {"clean"}
    assert {r["kind"] for r in records_of(outcome.paths)} == {"warmup", "eval"}  # no latency: no top-ups


def test_the_host_profile_has_no_limits(tmp_path: Path) -> None:
    outcome = run_fake(tmp_path, device="host", limit=2, metrics=["latency", "power"])
    device = outcome.summary["device"]
    assert device["memory_enforcement"] == "none"
    assert device["limits"]["memory_bytes"] is None and device["limits"]["cpus"] is None
    for figure in ("energy_per_request", "average_power"):
        assert outcome.summary["metrics"]["power"][figure]["label"] in ("measured", "estimated")


def test_a_profile_smaller_than_the_weights_does_not_fit(tmp_path: Path) -> None:
    config = config_with_profile("tiny-box", cores=1, memory_mib=64)
    outcome = run_fake(
        tmp_path,
        config=config,
        device="tiny-box",
        backend="llamacpp",
        metrics=["accuracy", "model_size"],
        write_report=True,
    )
    summary = outcome.summary
    assert summary["fits"]["fits"] is False
    reason = summary["fits"]["reason"]
    assert "64 MiB of tiny-box" in reason
    assert "the weights alone take 9" in reason  # the SmolLM2 GGUF: about 94 MiB
    assert summary["validity"] == {"valid": False, "reasons": [reason]}
    assert summary["metrics"]["model_size"]["on_disk"]["value"] > 64
    assert list(read_records(outcome.paths.records)) == []
    assert outcome.report is not None and "fits the device | false" in outcome.report.read_text(encoding="utf-8")


@pytest.mark.slow
@needs_cgroup
def test_running_out_of_memory_is_recorded_as_not_fitting(tmp_path: Path) -> None:
    config = config_with_profile("small-box", cores=1, memory_mib=300)
    outcome = run_fake(
        tmp_path,
        config=config,
        device="small-box",
        backend="llamacpp",
        context_length=32768,
        limit=1,
        metrics=["accuracy", "latency", "memory"],
    )
    summary = outcome.summary
    assert summary["fits"] == {
        "fits": False,
        "reason": "the worker ran out of memory under the limit of 300 MiB (cgroup-v1)",
    }
    assert summary["validity"]["valid"] is False
    assert read_json(outcome.paths.run_file)["device"]["memory_mib"] == 300


def test_resuming_a_finished_run_reuses_answers_and_times_again(tmp_path: Path) -> None:
    first = run_fake(tmp_path, limit=2, metrics=["accuracy", "latency"])
    settings, card, paths = resumed_run(first.summary["run_id"], tmp_path)
    again = execute(settings, card, paths, tmp_path / "cache", measure_host=False, write_report=False)
    records = records_of(paths)
    assert [(r["session"], r["kind"]) for r in records if r["session"] == 1] == [(1, "warmup")] + [(1, "timing")] * 5
    assert again.summary["sessions"] == 2
    assert again.summary["metrics"]["accuracy"]["f1"]["n"] == 2
    assert again.summary["metrics"]["latency"]["requests"] == 5


def test_a_run_on_a_relative_dataset_path_resumes_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "start"
    start.mkdir()
    write_qa_jsonl(start / "qa.jsonl", 3)
    monkeypatch.chdir(start)
    first = run_fake(start / "results", dataset="qa.jsonl", limit=None, metrics=["accuracy"])
    monkeypatch.chdir(tmp_path)
    settings, card, paths = resumed_run(str(first.paths.root), tmp_path / "results")
    again = execute(settings, card, paths, tmp_path / "cache", measure_host=False, write_report=False)
    assert again.summary["task"]["examples"] == 3


class _OneInstant(datetime):
    @classmethod
    def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
        return datetime(2026, 11, 29, 10, 15, 0, tzinfo=timezone.utc)


def test_a_new_run_never_reuses_an_existing_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_module, "datetime", _OneInstant)
    monkeypatch.setattr(records_module, "secrets", SimpleNamespace(token_hex=lambda n: "abcd"))
    config = packaged_config()
    settings, card, paths = new_run(fake_request(limit=2, metrics=["accuracy"]), config, tmp_path)
    execute(settings, card, paths, tmp_path / "cache", measure_host=False, write_report=False)
    try:
        _, _, second = new_run(fake_request(limit=3, metrics=["accuracy"]), config, tmp_path)
    except UserError:
        return
    assert second.root != paths.root
