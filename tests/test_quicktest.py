"""The quick test on the fake backend: prompts in, streamed pieces and labelled figures out."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_eval.backends import fake
from slm_eval.backends.base import Generation, LoadOptions
from slm_eval.backends.fake import FakeBackend
from slm_eval.errors import UserError
from slm_eval.metrics.figures import Figure
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard
from slm_eval.quicktest import QuickTestAnswer, QuickTestPlan, SilentListener, check_prompts, run_quick_test

Event = tuple[str, int, str]


class RecordingListener:
    """Keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.answers: list[QuickTestAnswer] = []

    def on_start(self, index: int, prompt: str) -> None:
        self.events.append(("start", index, prompt))

    def on_token(self, index: int, piece: str) -> None:
        self.events.append(("token", index, piece))

    def on_answer(self, answer: QuickTestAnswer) -> None:
        self.events.append(("answer", len(self.answers), answer.generation.text))
        self.answers.append(answer)


def _plan(prompts: tuple[str, ...], backend: str | None = "fake", max_new_tokens: int = 8) -> QuickTestPlan:
    return QuickTestPlan(
        card=default_registry().resolve("smollm2"),
        backend=backend,
        prompts=prompts,
        max_new_tokens=max_new_tokens,
        system=None,
        load_options=LoadOptions(threads=1),
        cache_dir=Path("unused-cache"),
    )


class ScriptedLoader:
    """Stands in for ``fake.load``: a scripted backend that the test can inspect afterwards."""

    def __init__(self, script: dict[str, str]) -> None:
        self.script = script
        self.backend: FakeBackend | None = None

    def __call__(self, card: ModelCard, location: Path | None, options: LoadOptions) -> FakeBackend:
        self.backend = FakeBackend(card.name, self.script)
        return self.backend


def test_events_come_in_order_with_each_prompts_index(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = ScriptedLoader({"first": "one two", "second": "three"})
    monkeypatch.setattr(fake, "load", loader)
    listener = RecordingListener()
    result = run_quick_test(_plan(("first", "second")), listener)
    assert listener.events == [
        ("start", 0, "first"),
        ("token", 0, "one"),
        ("token", 0, " two"),
        ("answer", 0, "one two"),
        ("start", 1, "second"),
        ("token", 1, "three"),
        ("answer", 1, "three"),
    ]
    assert [answer.prompt for answer in result.answers] == ["first", "second"]
    assert result.answers == tuple(listener.answers)
    assert loader.backend is not None
    with pytest.raises(RuntimeError):  # closed after the run
        loader.backend.generate([])


def test_backend_is_closed_when_a_listener_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = ScriptedLoader({})
    monkeypatch.setattr(fake, "load", loader)

    class Failing(SilentListener):
        def on_answer(self, answer: QuickTestAnswer) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_quick_test(_plan(("a prompt",)), Failing())
    assert loader.backend is not None
    with pytest.raises(RuntimeError):
        loader.backend.generate([])


def test_result_is_labelled() -> None:
    result = run_quick_test(_plan(("What is a visa?",), max_new_tokens=3), SilentListener())
    assert result.model == "smollm2-135m-instruct"
    assert result.backend == "fake"
    assert result.threads == 1
    assert result.load_time.label == "measured"
    assert result.load_time.unit == "s"
    assert result.peak_memory.label == "measured"
    assert result.peak_memory.value is not None
    assert result.peak_memory.value > 0
    (answer,) = result.answers
    assert answer.label == "scripted"
    assert answer.generation.finish_reason == "length"
    assert {figure.label for figure in answer.figures().values()} == {"scripted"}
    record = result.to_dict()
    assert record["model"] == "smollm2-135m-instruct"
    assert isinstance(record["results"], list)
    assert record["results"][0]["output_tokens"] == 3


def test_answer_figures_are_in_milliseconds() -> None:
    generation = Generation(
        text="a b c",
        prompt_tokens=10,
        output_tokens=3,
        started_at=2.0,
        token_times=(2.05, 2.07, 2.09),
        finished_at=2.1,
        finish_reason="stop",
    )
    answer = QuickTestAnswer("p", generation, "measured", Figure(100.0, "MiB", "measured"))
    figures = answer.figures()
    assert figures["time_to_first_token"].value == pytest.approx(50.0)
    assert figures["time_to_first_token"].unit == "ms"
    assert figures["time_per_output_token"].value == pytest.approx(20.0)
    assert figures["end_to_end"].value == pytest.approx(100.0)
    assert figures["decode_speed"].value == pytest.approx(50.0)
    assert figures["decode_speed"].unit == "tokens/s"
    assert figures["prompt_speed"].value == pytest.approx(200.0)
    record = answer.to_dict()
    assert record["output"] == "a b c"
    assert record["peak_memory"] == {"value": 100.0, "unit": "MiB", "label": "measured"}


def test_answer_figures_without_tokens_are_none() -> None:
    generation = Generation("", 5, 0, 1.0, (), 1.5, "stop")
    figures = QuickTestAnswer("p", generation, "measured", Figure(1.0, "MiB", "measured")).figures()
    assert figures["time_to_first_token"].value is None
    assert figures["time_per_output_token"].value is None
    assert figures["decode_speed"].value is None
    assert figures["end_to_end"].value == pytest.approx(500.0)


def test_check_prompts() -> None:
    assert check_prompts(["a", "b"]) == ("a", "b")
    with pytest.raises(UserError, match="no prompt given"):
        check_prompts([])
    with pytest.raises(UserError, match="empty prompt"):
        check_prompts(["ok", " \n "])


def test_run_rejects_an_empty_prompt_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = ScriptedLoader({})
    monkeypatch.setattr(fake, "load", loader)
    with pytest.raises(UserError, match="empty prompt"):
        run_quick_test(_plan(("",)), SilentListener())
    assert loader.backend is None
