"""The benchmark with the fake backend: the plan, one run per cell, resume, and the summary with verdicts."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from slm_eval.devices.profiles import EvaluationConfig
from slm_eval.errors import UserError
from slm_eval.evaluation.benchmark import (
    PLAN_FILE,
    SUMMARY_FILE,
    BenchmarkRequest,
    Cell,
    load_plan,
    plan_benchmark,
    run_cells,
    save_plan,
    summarize_benchmark,
    write_summary,
)
from slm_eval.evaluation.summary import HostPerformanceSource
from slm_eval.results.records import RunPaths, read_json
from slm_eval.tasks.catalogue import USE_CASES, load_use_case
from tests.fake_runs import MODEL, config_with_profile, packaged_config, records_of

HOST = HostPerformanceSource(20.0, 100.0)
CHOSEN = ("document-verification", "customs-help")
DEVICES = ("docker-sim", "host")
COSTS = {"accuracy", "latency", "memory", "model_size", "inference_time", "power"}


def _request(**overrides: Any) -> BenchmarkRequest:
    request = BenchmarkRequest(
        models=(MODEL,),
        devices=DEVICES,
        use_cases=CHOSEN,
        limit=3,
        seed=0,
        robustness=False,
        threads=None,
        context_length=2048,
        backend="fake",
    )
    return replace(request, **overrides)


@dataclass(frozen=True)
class Benchmark:
    benchmark_id: str
    root: Path
    cells: list[Cell]
    config: EvaluationConfig

    def paths(self, device: str, use_case: str) -> RunPaths:
        (cell,) = [c for c in self.cells if c.device == device and c.use_case == use_case]
        return RunPaths(cell.folder(self.root))


def _run_benchmark(parent: Path, config: EvaluationConfig | None = None, **overrides: Any) -> Benchmark:
    config = config or packaged_config()
    benchmark_id, cells = plan_benchmark(_request(**overrides), config)
    root = parent / benchmark_id
    root.mkdir(parents=True)
    save_plan(root, cells, config)
    run_cells(root, cells, parent / "cache", host=HOST)
    return Benchmark(benchmark_id, root, cells, config)


@pytest.fixture(autouse=True)
def _never_measure_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's capacity is passed in; measuring it would take seconds."""

    def fail(cls: type) -> HostPerformanceSource:
        raise AssertionError("the host was measured although its capacity was given")

    monkeypatch.setattr(HostPerformanceSource, "measure", classmethod(fail))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Benchmark:
    """One model on two devices with two use cases, three examples each; read it, never change it."""
    return _run_benchmark(tmp_path_factory.mktemp("benchmark"))


@pytest.fixture
def copy(finished: Benchmark, tmp_path: Path) -> Benchmark:
    """A copy of the finished benchmark that a test may change."""
    root = tmp_path / finished.benchmark_id
    shutil.copytree(finished.root, root)
    return replace(finished, root=root)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- the plan ------------------------------------------------------------------------------------------


def test_the_plan_is_models_by_devices_by_use_cases() -> None:
    request = _request(models=(MODEL, "gemma-3-270m"))
    benchmark_id, cells = plan_benchmark(request, packaged_config())
    assert "benchmark" in benchmark_id
    assert [(c.model, c.device, c.use_case) for c in cells] == [
        (model, device, use_case) for model in (MODEL, "gemma-3-270m") for device in DEVICES for use_case in CHOSEN
    ]
    for cell in cells:
        settings = cell.settings
        assert settings.run_id == f"{benchmark_id}/{cell.model}/{cell.device}/{cell.use_case}"
        assert settings.model == cell.model and settings.device.name == cell.device
        assert settings.task == settings.dataset == cell.use_case
        assert settings.max_new_tokens == load_use_case(cell.use_case).max_new_tokens
        assert settings.prefix_cache is True
        assert settings.limit == 3 and settings.seed == 0 and settings.backend == "fake"
        assert set(settings.metrics) == COSTS
    max_tokens = {c.use_case: c.settings.max_new_tokens for c in cells}
    assert max_tokens["document-verification"] < max_tokens["customs-help"]  # each task's own budget
    assert cells[0].folder(Path("r")) == Path("r", MODEL, "docker-sim", "document-verification")


def test_the_plan_follows_the_request_options() -> None:
    _, cells = plan_benchmark(_request(robustness=True, prefix_cache=False, threads=1), packaged_config())
    assert all("robustness" in c.settings.metrics for c in cells)
    assert all(c.settings.prefix_cache is False and c.settings.threads == 1 for c in cells)


def test_every_use_case_when_none_is_chosen_and_duplicates_collapse() -> None:
    _, cells = plan_benchmark(_request(use_cases=None, devices=("host", "host")), packaged_config())
    assert [c.use_case for c in cells] == list(USE_CASES)
    assert {c.device for c in cells} == {"host"}
    _, cells = plan_benchmark(
        _request(use_cases=("customs-help", "document-verification", "customs-help")), packaged_config()
    )
    assert [c.use_case for c in cells] == ["document-verification", "customs-help"] * 2


def test_a_remote_api_model_has_no_memory_or_power() -> None:
    _, cells = plan_benchmark(_request(models=("grok-3-mini-fast",), devices=("host",)), packaged_config())
    assert {metric for c in cells for metric in c.settings.metrics} == COSTS - {"memory", "power"}


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_below_one_is_rejected(limit: int) -> None:
    with pytest.raises(UserError, match=f"--limit must be at least 1 \\(got {limit}\\)"):
        plan_benchmark(_request(limit=limit), packaged_config())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ("phi-4",)}, "unknown model 'phi-4'"),
        ({"devices": ("docker-sim", "docker-sm")}, "unknown device profile 'docker-sm'"),
        ({"use_cases": ("customs-help", "passport-scan")}, "unknown use case 'passport-scan'"),
    ],
    ids=["model", "device", "use-case"],
)
def test_an_unknown_name_is_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        plan_benchmark(_request(**overrides), packaged_config())


def test_an_alias_and_its_full_name_are_one_model() -> None:
    _, cells = plan_benchmark(_request(models=("smollm2", MODEL), devices=("host",)), packaged_config())
    assert [(c.model, c.use_case) for c in cells] == [(MODEL, use_case) for use_case in CHOSEN]


def test_save_plan_and_load_plan_round_trip(tmp_path: Path) -> None:
    data = packaged_config().model_dump(mode="json")
    data["benchmark"]["overall_min_score"] = 0.8
    config = EvaluationConfig.model_validate(data)
    _, cells = plan_benchmark(_request(models=(MODEL, "gemma-3-270m")), config)
    save_plan(tmp_path, cells, config)
    assert len(json.loads((tmp_path / PLAN_FILE).read_text(encoding="utf-8"))["cells"]) == 8
    loaded, requirements = load_plan(tmp_path)
    assert loaded == cells
    assert requirements == config.benchmark
    assert requirements.overall_min_score == 0.8


def test_load_plan_of_a_folder_without_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"is not a benchmark folder: it has no {PLAN_FILE}"):
        load_plan(tmp_path)


# --- running the cells ---------------------------------------------------------------------------------


def test_every_cell_gets_its_own_run_with_a_summary(finished: Benchmark) -> None:
    assert (finished.root / PLAN_FILE).is_file()
    for cell in finished.cells:
        paths = RunPaths(cell.folder(finished.root))
        for path in (paths.run_file, paths.records, paths.summary):
            assert path.is_file(), path
        summary = read_json(paths.summary)
        assert summary["run_id"] == cell.settings.run_id
        assert summary["task"]["name"] == cell.use_case
        assert summary["device"]["profile"]["name"] == cell.device
        assert summary["task"]["examples"] == 3
        assert summary["sessions"] == 1
        assert summary["model"]["backend"] == "fake"
        assert not (paths.root / "report.md").exists()  # one report for the whole benchmark, not per cell


def test_unparseable_answers_are_kept_with_their_parse_error_and_score_zero(finished: Benchmark) -> None:
    for device in DEVICES:
        paths = finished.paths(device, "document-verification")
        scored = [r for r in records_of(paths) if r["kind"] == "eval"]
        assert len(scored) == 3
        for record in scored:
            assert record["output"].startswith("(dry run)")
            assert isinstance(record["parse_error"], str) and record["parse_error"]
            assert record["scores"]["decision"] == 0.0
            assert set(record["scores"].values()) == {0.0}
        assert read_json(paths.summary)["task"]["parse_errors"] == 3


def test_running_again_skips_finished_cells(copy: Benchmark) -> None:
    before = _files(copy.root)
    seen: list[tuple[str, int, int]] = []
    run_cells(copy.root, copy.cells, copy.root.parent / "cache", on_cell=lambda *a: seen.append(a), host=HOST)
    assert _files(copy.root) == before
    assert seen == [(f"{MODEL} · {c.device} · {c.use_case}", i, 4) for i, c in enumerate(copy.cells)]


def test_a_cell_without_summary_resumes_from_its_records(copy: Benchmark) -> None:
    resumed = copy.paths("docker-sim", "customs-help")
    old_records = resumed.records.read_text(encoding="utf-8")
    resumed.summary.unlink()
    others = {
        path: data
        for path, data in _files(copy.root).items()
        if not path.startswith(str(resumed.root.relative_to(copy.root)))
    }
    run_cells(copy.root, copy.cells, copy.root.parent / "cache", host=HOST)

    assert {path: data for path, data in _files(copy.root).items() if path in others} == others
    new_records = resumed.records.read_text(encoding="utf-8")
    assert new_records.startswith(old_records)  # appended to, never rewritten
    records = records_of(resumed)
    scored = [r for r in records if r["kind"] == "eval"]
    assert len(scored) == 3 and len({r["example_id"] for r in scored}) == 3  # no example scored twice
    assert {r["session"] for r in scored} == {0}
    assert {r["kind"] for r in records if r["session"] == 1} <= {"warmup", "timing"}
    summary = read_json(resumed.summary)
    assert summary["sessions"] == 2
    assert summary["task"]["examples"] == 3
    assert summary["metrics"]["accuracy"]["score"]["n"] == 3


# --- the summary and verdicts --------------------------------------------------------------------------


def test_summarize_benchmark_gives_an_overall_score_and_verdict_per_model_and_device(finished: Benchmark) -> None:
    summary = summarize_benchmark(finished.benchmark_id, finished.root, finished.cells, finished.config.benchmark)
    assert summary["benchmark_id"] == finished.benchmark_id
    assert summary["models"] == [MODEL]
    assert summary["devices"] == list(DEVICES)
    assert summary["use_cases"] == list(CHOSEN)
    assert (summary["limit"], summary["seed"], summary["prefix_cache"]) == (3, 0, True)
    assert summary["requirements"] == finished.config.benchmark.model_dump(mode="json")
    assert [(e["model"], e["device"]) for e in summary["results"]] == [(MODEL, d) for d in DEVICES]
    for entry in summary["results"]:
        overall = entry["overall"]
        assert overall["weights"] == pytest.approx({"document-verification": 0.625, "customs-help": 0.375})
        assert overall["mean"] == overall["low"] == overall["high"] == 0.0  # the fake backend answers nothing right
        verdict = entry["verdict"]
        assert verdict["verdict"] == "FAIL"
        assert "document-verification: decision at least 0.9, got 0" in verdict["reasons"]
        assert "customs-help: score at least 0.6, got 0" in verdict["reasons"]
        assert verdict["reasons"][-1] == "overall: overall score 0.7, got 0"
        assert [u["use_case"] for u in entry["use_cases"]] == list(CHOSEN)
        for use_case in entry["use_cases"]:
            assert use_case["run"] == f"{MODEL}/{entry['device']}/{use_case['use_case']}"
            assert use_case["n"] == 3 and use_case["mean"] == 0.0 and use_case["fits"] is True
            cell_summary = read_json(finished.root / use_case["run"] / "summary.json")
            # the fake backend has no weights to project from: its scripted latency is kept as it is
            assert use_case["latency_p90_ms"] == cell_summary["metrics"]["latency"]["end_to_end"]["p90"]
            expected = "scripted" if entry["device"] == "host" else "scripted, not projected"
            assert use_case["latency_label"] == expected
        assert entry["use_cases"][0]["primary_score"] == "decision"
        assert entry["use_cases"][0]["corpus"]["false_accept_rate"] == 0.0


def test_the_overall_score_is_computed_from_the_records(copy: Benchmark) -> None:
    def rescore(paths: RunPaths, name: str, values: list[float]) -> None:
        records = records_of(paths)
        evals = iter(values)
        for record in records:
            if record["kind"] == "eval":
                record["scores"][name] = next(evals)
        paths.records.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    rescore(copy.paths("host", "document-verification"), "decision", [1.0, 0.0, 1.0])
    rescore(copy.paths("host", "customs-help"), "score", [0.5, 0.5, 0.5])
    summary = summarize_benchmark(copy.benchmark_id, copy.root, copy.cells, copy.config.benchmark)
    docker, host = summary["results"]
    assert docker["overall"]["mean"] == 0.0
    assert [u["mean"] for u in host["use_cases"]] == pytest.approx([2 / 3, 0.5])
    assert host["overall"]["mean"] == pytest.approx(0.625 * 2 / 3 + 0.375 * 0.5)
    assert host["overall"]["low"] <= host["overall"]["mean"] <= host["overall"]["high"]
    assert "document-verification: decision at least 0.9, got 0.667" in host["verdict"]["reasons"]
    assert "customs-help: score at least 0.6, got 0.5" in host["verdict"]["reasons"]
    assert host["verdict"]["reasons"][-1] == "overall: overall score 0.7, got 0.604"


def test_write_summary_writes_benchmark_json(copy: Benchmark) -> None:
    summary = summarize_benchmark(copy.benchmark_id, copy.root, copy.cells, copy.config.benchmark)
    path = write_summary(copy.root, summary)
    assert path == copy.root / SUMMARY_FILE
    assert read_json(path) == json.loads(json.dumps(summary))


def test_a_model_that_does_not_fit_the_device_fails_with_the_reason(tmp_path: Path) -> None:
    config = config_with_profile("tiny", cores=1, memory_mib=64)
    benchmark = _run_benchmark(tmp_path, config, devices=("tiny",), use_cases=("customs-help",), backend=None, limit=2)
    summary = summarize_benchmark(benchmark.benchmark_id, benchmark.root, benchmark.cells, config.benchmark)
    (entry,) = summary["results"]
    assert entry["overall"] is None
    assert entry["verdict"]["verdict"] == "FAIL"
    (reason,) = entry["verdict"]["reasons"]
    assert reason.startswith("customs-help: does not fit (the weights alone take ")
    assert reason.endswith("more than the 64 MiB of tiny)")
    (use_case,) = entry["use_cases"]
    assert use_case["fits"] is False and use_case["n"] == 0 and use_case["mean"] is None
