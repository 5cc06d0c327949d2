"""``slm-eval evaluate`` on an encoder: MiniLM answers border QA with spans of the passage; its head is untrained."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slm_eval.backends.base import EncoderPrediction, EncoderRequest
from slm_eval.cli import main
from slm_eval.devices import worker
from slm_eval.errors import UserError
from slm_eval.evaluation.plan import RequestSpec, encoder_task_for
from slm_eval.evaluation.runner import _job_request
from slm_eval.evaluation.summary import HostPerformanceSource
from slm_eval.models.catalogue import default_registry
from slm_eval.tasks.catalogue import resolve_task
from slm_eval.tasks.squad import load_builtin_border_qa
from tests.conftest import RunCli
from tests.support import CliResult, exit_code

pytest.importorskip("torch")
pytest.importorskip("transformers")

MODEL = "all-minilm-l6-v2"
WARNING = "the qa head of all-minilm-l6-v2 is randomly initialised (not trained)"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _invoke(*argv: str) -> CliResult:
    """``slm-eval argv`` in this process, its stdout and stderr caught (rich and typer write to sys.stdout/err)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exit_code(exc)
        else:
            code = 0
    return CliResult(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class EncoderRun:
    """One finished encoder run: what the CLI printed and the run folder it wrote."""

    result: CliResult
    root: Path

    def records(self) -> list[dict[str, Any]]:
        lines = (self.root / "records.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def summary(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "summary.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working folder for the module's runs, with the host's capacity fixed (measuring it takes seconds)."""
    folder = tmp_path_factory.mktemp("encoder-evaluate")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("SLM_EVAL_"):
                patch.delenv(name)
        patch.setattr(HostPerformanceSource, "measure", classmethod(lambda cls: cls(20.0, 100.0)))
        patch.chdir(folder)
        yield folder


@pytest.fixture(scope="module")
def encoder_run(workdir: Path) -> EncoderRun:
    """Three border-QA questions answered by MiniLM's (random) QA head: 1 warm-up, 3 scored, 2 timing top-ups."""
    result = _invoke("evaluate", "--model", MODEL, "--limit", "3", "--metrics", "accuracy", "latency")
    assert result.code == 0, result.err
    (root,) = sorted(p for p in (workdir / "results").iterdir() if p.is_dir())
    return EncoderRun(result, root)


@pytest.fixture(scope="module")
def contexts() -> dict[str, tuple[str, str]]:
    """Each built-in border-QA example's question and passage, by id."""
    return {example.id: (example.question, example.context or "") for example in load_builtin_border_qa()}


# --- one real run ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_answer_is_a_span_of_its_passage(encoder_run: EncoderRun, contexts: dict[str, tuple[str, str]]) -> None:
    records = encoder_run.records()
    kinds = [r["kind"] for r in records]
    assert kinds[:6] == ["warmup", "eval", "eval", "eval", "timing", "timing"]
    assert set(kinds[6:]) <= {"timing"}  # repeated until the timed requests last the minimum duration
    for record in records:
        question, context = contexts[record["example_id"]]
        assert record["prompt"] == question  # the encoder is given the question itself, not a chat prompt
        assert record["output"] and record["output"] in context
        assert record["output_tokens"] == 0 and record["ttft_ms"] is None and record["tpot_ms"] is None
        assert record["prompt_tokens"] > len(question.split())
        assert record["e2e_ms"] > 0
        assert 0 <= record["confidence"] <= 1
    scored = [r for r in records if r["kind"] == "eval"]
    assert len({r["example_id"] for r in scored}) == 3
    timed = [r for r in records if r["kind"] in ("eval", "timing")]
    assert sum(r["e2e_ms"] for r in timed) >= 2000 or len(timed) >= 10_000
    assert all(r["scores"] is None for r in records if r["kind"] == "timing")
    assert all(set(r["scores"]) == {"f1", "exact_match"} for r in scored)


@pytest.mark.slow
def test_summary_names_the_head_and_warns_it_is_untrained(encoder_run: EncoderRun) -> None:
    summary = encoder_run.summary()
    model = summary["model"]
    assert model["name"] == MODEL and model["kind"] == "encoder"
    assert model["backend"] == "transformers"
    assert model["encoder_task"] == "qa"
    assert model["head_trained"] is False
    (warning,) = summary["warnings"]
    assert warning.startswith(WARNING)
    accuracy = summary["metrics"]["accuracy"]
    assert accuracy["f1"]["n"] == 3 and 0 <= accuracy["f1"]["mean"] <= 1
    latency = summary["metrics"]["latency"]
    # three answers, two timing top-ups, then repeats until the timed requests last the minimum duration
    assert latency["requests"] > 5
    assert summary["validity"]["valid"] is True, summary["validity"]
    assert latency["end_to_end"]["label"] == "measured" and latency["end_to_end"]["min"] > 0


@pytest.mark.slow
def test_report_and_terminal_carry_the_warning(encoder_run: EncoderRun) -> None:
    report = (encoder_run.root / "report.md").read_text(encoding="utf-8")
    assert f"Warning: {WARNING}" in _flat(report)
    assert f"warning: {WARNING}" in _flat(encoder_run.result.err)
    assert WARNING not in _flat(encoder_run.result.out)  # the table on stdout stays a table


@pytest.mark.slow
def test_resume_keeps_the_encoder_head(encoder_run: EncoderRun, contexts: dict[str, tuple[str, str]]) -> None:
    """A resumed run reuses the scored answers and measures timing again, still as extractive QA."""
    before = len(encoder_run.records())
    result = _invoke("evaluate", "--resume", encoder_run.root.name, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["model"]["encoder_task"] == "qa"
    assert summary["warnings"] and summary["warnings"][0].startswith(WARNING)
    added = encoder_run.records()[before:]
    assert added and {r["kind"] for r in added} <= {"warmup", "timing"}
    for record in added:
        assert record["session"] == 1
        assert record["output"] in contexts[record["example_id"]][1]


# --- what an encoder cannot do ---------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["document-verification", "entity-threat-detection", "report-generation"])
def test_a_use_case_that_needs_generated_text_fails_before_any_run_folder(
    run_cli: RunCli, tmp_path: Path, dataset: str
) -> None:
    line = run_cli("evaluate", "--model", MODEL, "--dataset", dataset, "--limit", "2").error_line()
    assert f"{dataset} needs generated text" in line
    assert "encoder" in line and "border-qa" in line
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_the_fake_backend_is_refused_for_an_encoder(run_cli: RunCli, tmp_path: Path) -> None:
    line = run_cli(
        "evaluate", "--model", MODEL, "--backend", "fake", "--limit", "2", "--metrics", "accuracy"
    ).error_line()
    assert "unexpected" not in line
    assert "fake" in line and "encoder" in line
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_encoder_task_for() -> None:
    registry = default_registry()
    border_qa = resolve_task(None)
    assert encoder_task_for(registry.resolve(MODEL), border_qa) == "qa"
    assert encoder_task_for(registry.resolve("smollm2-135m-instruct"), border_qa) is None
    assert encoder_task_for(registry.resolve("grok-3-mini-fast"), border_qa) is None
    with pytest.raises(UserError, match="customs-help needs generated text"):
        encoder_task_for(registry.resolve(MODEL), resolve_task("customs-help"))


# --- the worker's encoder path, with a scripted encoder --------------------------------------------------


class ScriptedEncoder:
    """An encoder backend that answers the first word of the passage after 0.5 s of its clock."""

    task = "qa"
    head_trained = False

    def __init__(self) -> None:
        self.requests: list[EncoderRequest] = []

    def predict(self, requests: Sequence[EncoderRequest]) -> list[EncoderPrediction]:
        self.requests.extend(requests)
        return [EncoderPrediction((r.context or "").split()[0], 10, 1.0, 1.5, 0.25) for r in requests]


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})


def test_job_request_carries_the_passage_only_for_an_encoder() -> None:
    encoder = RequestSpec("eval|a|clean", "eval", "a", "clean", "Who?", "Nathaniel was detained.")
    decoder = RequestSpec("eval|a|clean", "eval", "a", "clean", "Answer: Who?")
    assert _job_request(encoder, 32) == {
        "key": "eval|a|clean",
        "prompt": "Who?",
        "max_new_tokens": 32,
        "context": "Nathaniel was detained.",
    }
    assert "context" not in _job_request(decoder, 32)


def test_worker_answers_an_encoder_with_latency_and_no_token_timings() -> None:
    backend = ScriptedEncoder()
    events = RecordingEvents()
    items = [
        {"key": "eval|a|clean", "prompt": "Who?", "context": "Nathaniel was detained.", "max_new_tokens": 8},
        {"key": "timing|a|0", "prompt": "Where?", "context": "Dover crossing.", "max_new_tokens": 8},
    ]
    answer = worker._encoder_answerer(backend)  # type: ignore[arg-type]
    for item in items:
        events.emit("result", key=item["key"], **answer(item))
    assert backend.requests == [
        EncoderRequest("Who?", "Nathaniel was detained."),
        EncoderRequest("Where?", "Dover crossing."),
    ]
    first, second = events.events
    assert first["event"] == "result" and first["key"] == "eval|a|clean"
    assert (first["text"], second["text"]) == ("Nathaniel", "Dover")
    assert first["prompt_tokens"] == 10 and first["output_tokens"] == 0
    assert first["e2e_s"] == pytest.approx(0.5)
    assert first["prompt_tps"] == pytest.approx(20.0)
    assert first["ttft_s"] is None and first["tpot_s"] is None and first["decode_tps"] is None
    assert first["confidence"] == 0.25 and first["finish_reason"] == "stop"


def test_worker_reports_the_head_only_for_an_encoder() -> None:
    assert worker._encoder_facts(ScriptedEncoder()) == {"encoder_task": "qa", "head_trained": False}
    assert worker._encoder_facts(object()) == {}
