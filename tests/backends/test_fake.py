"""The fake backend: scripted answers and timings on a stepping clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_eval.backends import fake
from slm_eval.backends.base import GenerationRequest, LoadOptions
from slm_eval.backends.fake import FakeBackend
from slm_eval.errors import UserError
from slm_eval.metrics.timing import SteppingClock
from slm_eval.models.catalogue import default_registry


def test_default_answer_is_deterministic() -> None:
    request = GenerationRequest("What must a traveller declare at the border?")
    first = FakeBackend("m").generate([request])[0]
    second = FakeBackend("m").generate([request])[0]
    assert first == second
    assert first.text == "(dry run) m received 8 words: What must a traveller declare at the border?"


def test_long_prompts_are_previewed() -> None:
    backend = FakeBackend("m")
    assert backend.answer_for("one two three four five six seven eight nine ten") == (
        "(dry run) m received 10 words: one two three four five six seven eight ..."
    )


def test_scripted_answers() -> None:
    backend = FakeBackend("m", {"Is this passport valid?": "Yes, until 2031."})
    (scripted, other) = backend.generate([GenerationRequest("Is this passport valid?"), GenerationRequest("hello")])
    assert scripted.text == "Yes, until 2031."
    assert scripted.output_tokens == 3
    assert scripted.finish_reason == "stop"
    assert scripted.prompt_text == "Is this passport valid?"
    assert other.text.startswith("(dry run) m received 1 words")


def test_timing_follows_the_stepping_clock() -> None:
    clock = SteppingClock(start=100.0)
    backend = FakeBackend(
        "m", {"a b c d e": "one two three four"}, clock=clock, prompt_token_s=0.002, output_token_s=0.02
    )
    (generation,) = backend.generate([GenerationRequest("a b c d e")])
    assert generation.prompt_tokens == 5
    assert generation.started_at == 100.0
    assert generation.time_to_first_token_s == pytest.approx(5 * 0.002)
    assert generation.token_times == pytest.approx((100.01, 100.03, 100.05, 100.07))
    assert generation.time_per_output_token_s == pytest.approx(0.02)
    assert generation.decode_tokens_per_s == pytest.approx(1 / 0.02)
    assert generation.prompt_tokens_per_s == pytest.approx(1 / 0.002)
    assert generation.end_to_end_s == pytest.approx(0.07)
    assert clock.now() == pytest.approx(100.07)


def test_requests_in_a_batch_follow_one_another_on_the_clock() -> None:
    clock = SteppingClock()
    backend = FakeBackend("m", {"p": "x y"}, clock=clock, prompt_token_s=1.0, output_token_s=1.0)
    first, second = backend.generate([GenerationRequest("p"), GenerationRequest("p")])
    assert first.finished_at == 2.0
    assert second.started_at == 2.0
    assert second.time_to_first_token_s == 1.0


def test_max_new_tokens_truncates_with_finish_reason_length() -> None:
    backend = FakeBackend("m", {"p": "one two three four"})
    (generation,) = backend.generate([GenerationRequest("p", max_new_tokens=2)])
    assert generation.text == "one two"
    assert generation.output_tokens == 2
    assert len(generation.token_times) == 2
    assert generation.finish_reason == "length"


def test_exactly_max_new_tokens_is_a_stop() -> None:
    (generation,) = FakeBackend("m", {"p": "one two"}).generate([GenerationRequest("p", max_new_tokens=2)])
    assert generation.finish_reason == "stop"


def test_on_token_pieces_join_to_the_text() -> None:
    pieces: dict[int, list[str]] = {0: [], 1: []}
    backend = FakeBackend("m", {"a": "Declare all cash.", "b": "No."})
    generations = backend.generate(
        [GenerationRequest("a"), GenerationRequest("b")], lambda index, piece: pieces[index].append(piece)
    )
    assert pieces[0] == ["Declare", " all", " cash."]
    assert ["".join(pieces[index]) for index in (0, 1)] == [generation.text for generation in generations]


@pytest.mark.parametrize("prompt", ["", "  \n"])
def test_empty_prompt(prompt: str) -> None:
    with pytest.raises(UserError, match="empty prompt"):
        FakeBackend("m").generate([GenerationRequest(prompt)])


def test_closed_backend_refuses_to_generate() -> None:
    backend = FakeBackend("m")
    backend.close()
    with pytest.raises(RuntimeError):
        backend.generate([GenerationRequest("p")])


def test_load_needs_no_weights() -> None:
    card = default_registry().resolve("phi-3-mini")  # hub weights, not on this machine
    backend = fake.load(card, None, LoadOptions())
    assert backend.name == "fake"
    assert backend.capabilities.generate
    assert backend.capabilities.streaming
    assert backend.answer_for("hi").startswith("(dry run) phi-3-mini ")


def test_load_ignores_a_location() -> None:
    backend = fake.load(default_registry().resolve("smollm2"), Path("anything.gguf"), LoadOptions())
    assert backend.generate([GenerationRequest("hi")])[0].output_tokens > 0
