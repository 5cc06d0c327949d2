"""The quick test of an encoder: the real bundled MiniLM with a QA, NER or classification head, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_eval.backends.base import LoadOptions
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.quicktest_encoder import (
    EncoderQuickTestPlan,
    EncoderQuickTestResult,
    check_encoder_inputs,
    run_encoder_quick_test,
)
from slm_eval.tasks.border.entities import ENTITY_TYPES, THREAT_LABELS
from tests.conftest import RunCli

pytest.importorskip("torch")
pytest.importorskip("transformers")

MODEL = "all-minilm-l6-v2"
CONTEXT = "Driver Nathaniel Balogun was detained at the Dover crossing on Tuesday night."
QUESTIONS = ("Who was detained?", "Where was he detained?")
NOTE = "Nathaniel Balogun, a Nigerian national, carried EUR 9,500 and a pistol in lorry AB12 CDE."
UNTRAINED = "the qa head of all-minilm-l6-v2 is randomly initialised (not trained)"


def _flat(text: str) -> str:
    """``text`` with every run of whitespace made one space (rich wraps long lines at the console width)."""
    return " ".join(text.split())


def _plan(task: str = "qa", texts: tuple[str, ...] = QUESTIONS, context: str | None = CONTEXT, **kw: object) -> object:
    return EncoderQuickTestPlan(
        card=default_registry().resolve(MODEL),
        backend=kw.get("backend"),  # type: ignore[arg-type]
        task=task,  # type: ignore[arg-type]
        texts=texts,
        context=context,
        load_options=LoadOptions(threads=2, context_length=512, encoder_task=task),  # type: ignore[arg-type]
        cache_dir=Path("unused-cache"),
    )


@pytest.fixture(scope="module")
def qa_result() -> EncoderQuickTestResult:
    """Two questions over one passage, answered by MiniLM with a (random) QA head."""
    return run_encoder_quick_test(_plan())  # type: ignore[arg-type]


# --- the library call ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_result_says_what_ran_and_that_the_head_is_untrained(qa_result: EncoderQuickTestResult) -> None:
    assert qa_result.model == MODEL
    assert qa_result.backend == "transformers"
    assert qa_result.task == "qa"
    assert qa_result.head_trained is False
    assert qa_result.warning is not None and qa_result.warning.startswith(UNTRAINED)
    assert "fine-tuned" in qa_result.warning


@pytest.mark.slow
def test_each_question_gets_a_span_of_the_passage(qa_result: EncoderQuickTestResult) -> None:
    assert [answer.text for answer in qa_result.answers] == list(QUESTIONS)
    for answer in qa_result.answers:
        prediction = answer.prediction
        assert prediction.text and prediction.text in CONTEXT
        assert CONTEXT[prediction.detail["start"] : prediction.detail["end"]] == prediction.text
        assert prediction.input_tokens > len(answer.text.split())
        assert answer.peak_memory.label == "measured" and answer.peak_memory.unit == "MiB"


@pytest.mark.slow
def test_figures_are_labelled_measured(qa_result: EncoderQuickTestResult) -> None:
    assert qa_result.load_time.label == "measured" and qa_result.load_time.unit == "s"
    assert qa_result.load_time.value is not None and qa_result.load_time.value > 0
    assert qa_result.peak_memory.value is not None and qa_result.peak_memory.value > 50


@pytest.mark.slow
def test_to_dict_is_json_ready(qa_result: EncoderQuickTestResult) -> None:
    record = json.loads(json.dumps(qa_result.to_dict()))
    assert record["head_trained"] is False
    assert record["warning"] == qa_result.warning
    assert [item["input"] for item in record["results"]] == list(QUESTIONS)
    first = record["results"][0]
    assert first["output"] == qa_result.answers[0].prediction.text
    assert first["latency"]["unit"] == "ms" and first["latency"]["label"] == "measured"
    assert first["latency"]["value"] > 0
    assert set(first["detail"]) == {"start", "end"}


@pytest.mark.parametrize(
    ("task", "texts", "context", "message"),
    [
        ("qa", (), CONTEXT, "no input given"),
        ("qa", ("  ",), CONTEXT, "empty input"),
        ("qa", ("Who?",), None, "--task qa needs --context"),
        ("qa", ("Who?",), "   ", "--task qa needs --context"),
        ("ner", (NOTE,), CONTEXT, "--context applies to --task qa only, not to --task ner"),
        ("classify", (NOTE,), "", "--context applies to --task qa only, not to --task classify"),
    ],
)
def test_check_encoder_inputs(task: str, texts: tuple[str, ...], context: str | None, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_encoder_inputs(task, texts, context)  # type: ignore[arg-type]


def test_the_fake_backend_cannot_stand_in_for_an_encoder() -> None:
    with pytest.raises(UserError, match="fake backend generates text; it cannot stand in for"):
        run_encoder_quick_test(_plan(backend="fake"))  # type: ignore[arg-type]


# --- the CLI ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_qa_prints_the_answer_and_warns_on_stderr(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "-m", MODEL, "--task", "qa", "--context", CONTEXT, "-i", QUESTIONS[0])
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if line.strip()]
    assert lines[0] == f"> {QUESTIONS[0]}"
    assert lines[1].strip() and lines[1].strip() in CONTEXT  # the span, on its own line
    out = _flat(result.out)
    assert "qa · input" in out and "latency" in out and "measured" in out
    err = _flat(result.err)
    assert err.startswith(f"warning: {UNTRAINED}")
    assert "randomly initialised" not in out  # the warning goes to stderr only


@pytest.mark.slow
def test_cli_qa_is_the_default_task(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "-m", "minilm", "--context", CONTEXT, "-i", QUESTIONS[1], "--json")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["task"] == "qa"
    assert record["head_trained"] is False
    assert record["warning"].startswith(UNTRAINED)
    (answer,) = record["results"]
    assert answer["output"] in CONTEXT
    assert CONTEXT[answer["detail"]["start"] : answer["detail"]["end"]] == answer["output"]


@pytest.mark.slow
def test_cli_ner(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "-m", MODEL, "--task", "ner", "-i", NOTE, "--json")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["task"] == "ner" and record["head_trained"] is False
    assert "the ner head of all-minilm-l6-v2 is randomly initialised" in record["warning"]
    (answer,) = record["results"]
    parsed = json.loads(answer["output"])
    assert set(parsed) == {"entities"}
    for entity in answer["detail"]["entities"]:
        assert entity["type"] in ENTITY_TYPES
        assert NOTE[entity["start"] : entity["end"]] == entity["text"]
    assert parsed["entities"] == [{"text": e["text"], "type": e["type"]} for e in answer["detail"]["entities"]]


@pytest.mark.slow
def test_cli_classify(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "-m", MODEL, "--task", "classify", "-i", NOTE)
    assert result.code == 0, result.err
    lines = [line.strip() for line in result.out.splitlines() if line.strip()]
    assert _flat(result.out).startswith(f"> {NOTE}")
    assert any(line in THREAT_LABELS for line in lines)
    assert "classify · input" in _flat(result.out)
    assert "the classify head of all-minilm-l6-v2 is randomly initialised" in _flat(result.err)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-m", MODEL, "--task", "qa", "-i", "Who?"], "--task qa needs --context"),
        (["-m", MODEL, "-i", "Who?"], "--task qa needs --context"),
        (["-m", MODEL, "--task", "ner", "--context", CONTEXT, "-i", NOTE], "--context applies to --task qa only"),
        (["-m", MODEL, "--task", "sumarise", "-i", NOTE], "unknown encoder task 'sumarise'"),
        (["-m", MODEL, "--task", "qa", "--context", CONTEXT], "no input given"),
        (["-m", MODEL, "--context", CONTEXT, "-i", "Who?", "--dry-run"], "cannot stand in for an encoder"),
        (
            ["-m", MODEL, "--context", CONTEXT, "-i", "Who?", "--backend", "fake"],
            "fake backend generates text; it cannot stand in for",
        ),
        (["-m", MODEL, "--context", CONTEXT, "-i", "Who?", "--backend", "llamacpp"], "cannot run on the llamacpp"),
        (["-m", "smollm2", "--task", "qa", "-i", "What is a visa?"], "apply to encoder models"),
        (["-m", "smollm2", "--context", CONTEXT, "-i", "What is a visa?", "--dry-run"], "apply to encoder models"),
    ],
    ids=[
        "qa-without-context",
        "default-qa-without-context",
        "context-with-ner",
        "unknown-task",
        "no-input",
        "dry-run",
        "fake-backend",
        "decoder-backend",
        "task-on-a-decoder",
        "context-on-a-decoder",
    ],
)
def test_cli_bad_input_is_one_line(run_cli: RunCli, args: list[str], expected: str) -> None:
    result = run_cli("quick-test", *args)
    line = result.error_line()
    assert expected in line
    assert result.out == ""


def test_cli_too_long_question_is_one_clear_line(run_cli: RunCli) -> None:
    """A question that fills the window is the user's to shorten, not an internal error to report."""
    question = "where is the passport office " * 40
    args = ("-m", MODEL, "--context-length", "128", "--context", CONTEXT, "-i", question)
    line = run_cli("quick-test", *args).error_line()
    assert "unexpected" not in line and "please report" not in line
    assert "--context-length" in line
