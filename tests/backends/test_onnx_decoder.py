"""The onnx backend's decoders (onnxruntime-genai) on tiny random exports of the seed architectures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

og = pytest.importorskip("onnxruntime_genai")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from slm_eval.backends import onnx as onnx_backend  # noqa: E402
from slm_eval.backends import onnx_decoder  # noqa: E402
from slm_eval.backends.base import Generation, GenerationRequest, LoadOptions  # noqa: E402
from slm_eval.backends.onnx_decoder import OnnxDecoderBackend, choose_provider, load_decoder  # noqa: E402
from slm_eval.errors import MissingDependencyError, UserError  # noqa: E402
from slm_eval.metrics.timing import Clock  # noqa: E402
from slm_eval.models.catalogue import default_registry  # noqa: E402
from slm_eval.models.registry import Registry  # noqa: E402
from tests.tiny_models import ARCHITECTURES, PROMPT, StepClock, TinyDecoders, copy_export, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def decoders(tmp_path_factory: pytest.TempPathFactory) -> TinyDecoders:
    """Tiny decoders and their exports, each made once for this module."""
    return TinyDecoders(tmp_path_factory.mktemp("onnx-decoders"))


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def seed_name(request: pytest.FixtureRequest) -> str:
    """The seed model whose architecture the tiny decoder copies."""
    return str(request.param)


@pytest.fixture(scope="module")
def fp32_dir(decoders: TinyDecoders, seed_name: str) -> Path:
    """The tiny decoder exported in fp32 for the CPU."""
    return Path(decoders.export(seed_name, "fp32").output_dir)


@pytest.fixture(scope="module")
def tiny(fp32_dir: Path) -> OnnxDecoderBackend:
    """The fp32 export loaded once per architecture, on a stepping clock."""
    return _load(fp32_dir, clock=StepClock())


def _load(folder: Path, clock: Clock | None = None, **changes: Any) -> OnnxDecoderBackend:
    card = Registry([]).resolve(str(folder))
    settings: dict[str, Any] = {"threads": 1, "context_length": 256, **changes}
    if clock is not None:
        settings["clock"] = clock
    backend = onnx_backend.load(card, card.source.locate(folder), LoadOptions(**settings))
    assert isinstance(backend, OnnxDecoderBackend)
    return backend


def _answer(backend: OnnxDecoderBackend, prompt: str = PROMPT, **changes: Any) -> Generation:
    (generation,) = backend.generate([GenerationRequest(prompt, **changes)])
    return generation


def _greedy_ids(folder: Path, backend: OnnxDecoderBackend, steps: int) -> list[int]:
    """The export's greedy token ids for :data:`PROMPT`, straight from onnxruntime-genai."""
    model = og.Model(str(folder))
    ids = backend.tokenize(backend.format_prompt(GenerationRequest(PROMPT)))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + steps, min_length=len(ids) + steps, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.asarray(ids, dtype=np.int32))
    tokens: list[int] = []
    while len(tokens) < steps:
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


# --- loading and generating --------------------------------------------------------------------------------


def test_export_folder_resolves_to_the_onnx_backend(fp32_dir: Path) -> None:
    card = Registry([]).resolve(str(fp32_dir))
    assert card.kind == "decoder"
    assert card.backends == ("onnx",)


def test_load_declares_capabilities_and_counts_parameters(
    tiny: OnnxDecoderBackend, decoders: TinyDecoders, seed_name: str
) -> None:
    assert tiny.name == "onnx"
    assert tiny.capabilities.generate and tiny.capabilities.streaming
    assert tiny.capabilities.chat_template and tiny.chat
    assert tiny.capabilities.local and tiny.capabilities.token_counts == "exact"
    assert not tiny.capabilities.prefix_cache
    assert tiny.provider == "cpu"
    reference = sum(parameter.numel() for parameter in _torch_model(decoders.source(seed_name)).parameters())
    assert tiny.parameter_count == reference


def _torch_model(folder: Path) -> Any:
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder)


def test_int4_export_counts_its_logical_weights(
    decoders: TinyDecoders, seed_name: str, tiny: OnnxDecoderBackend
) -> None:
    backend = _load(Path(decoders.export(seed_name, "int4").output_dir))
    assert backend.parameter_count == tiny.parameter_count  # MatMulNBits weights count as K x N, not packed bytes
    generation = _answer(backend, max_new_tokens=4, ignore_eos=True)
    assert generation.output_tokens == 4


def test_greedy_generation_is_deterministic_streamed_and_timed(tiny: OnnxDecoderBackend) -> None:
    pieces: list[tuple[int, str]] = []
    (first,) = tiny.generate(
        [GenerationRequest(PROMPT, max_new_tokens=6, ignore_eos=True)],
        lambda index, piece: pieces.append((index, piece)),
    )
    second = _answer(tiny, max_new_tokens=6, ignore_eos=True)
    assert first.text == second.text and first.text
    assert "".join(piece for _, piece in pieces) == first.text
    assert {index for index, _ in pieces} == {0}
    assert first.output_tokens == 6 == len(first.token_times)
    assert first.finish_reason == "length"
    assert first.prompt_text == "<s><|user|> what is a visa </s> <|assistant|> "
    assert first.prompt_tokens == len(tiny.tokenize(first.prompt_text))
    assert tiny.tokenize(first.prompt_text)[0] == 1  # the template's BOS, not a second one added on top
    assert list(first.token_times) == sorted(set(first.token_times))
    assert first.started_at < first.token_times[0] <= first.finished_at
    assert first.time_to_first_token_s == pytest.approx(0.01)  # one clock reading per token on a stepping clock
    assert first.time_per_output_token_s == pytest.approx(0.01)


def test_fp32_export_answers_like_the_transformers_backend(
    tiny: OnnxDecoderBackend, decoders: TinyDecoders, seed_name: str
) -> None:
    from slm_eval.backends import transformers as transformers_backend

    source = decoders.source(seed_name)
    card = Registry([]).resolve(str(source))
    reference = transformers_backend.load(card, source, LoadOptions(threads=1, context_length=256))
    expected = reference.generate([GenerationRequest(PROMPT, max_new_tokens=8)])[0]
    torch.set_num_threads(1)
    answer = _answer(tiny, max_new_tokens=8)
    assert answer.prompt_text == expected.prompt_text
    assert answer.prompt_tokens == expected.prompt_tokens
    assert (answer.text, answer.output_tokens, answer.finish_reason) == (
        expected.text,
        expected.output_tokens,
        expected.finish_reason,
    )


def test_stop_string_cuts_the_output(tiny: OnnxDecoderBackend) -> None:
    full = _answer(tiny, max_new_tokens=12, ignore_eos=True).text
    middle = len(full) // 2
    stop = full[middle : middle + 2]
    cut = _answer(tiny, max_new_tokens=12, ignore_eos=True, stop=(stop,))
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]
    assert cut.output_tokens < 12


def test_end_of_sequence_token_ends_the_output(tiny: OnnxDecoderBackend, fp32_dir: Path, tmp_path: Path) -> None:
    tokens = _greedy_ids(fp32_dir, tiny, 8)
    position = next(i for i in range(2, 8) if tokens[i] not in tokens[:i])

    def set_eos(config: dict[str, Any]) -> None:
        config["model"]["eos_token_id"] = tokens[position]

    backend = _load(copy_export(fp32_dir, tmp_path / "eos", set_eos))
    generation = _answer(backend, max_new_tokens=8)
    assert generation.finish_reason == "stop"
    assert generation.output_tokens == position  # the end-of-sequence token itself is not counted
    ignoring = _answer(backend, max_new_tokens=8, ignore_eos=True)
    assert (ignoring.output_tokens, ignoring.finish_reason) == (8, "length")


def test_plain_completion_without_chat(fp32_dir: Path) -> None:
    backend = _load(fp32_dir, chat=False)
    assert not backend.chat and not backend.capabilities.chat_template
    generation = _answer(backend, max_new_tokens=3, ignore_eos=True, system="Be brief.")
    assert generation.prompt_text == f"Be brief.\n\n{PROMPT}"
    assert generation.output_tokens == 3


def test_a_tokenizer_that_adds_bos_gets_exactly_one(fp32_dir: Path, tmp_path: Path) -> None:
    from tokenizers import processors

    tokenizer = tiny_tokenizer()
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    folder = copy_export(fp32_dir, tmp_path / "bos")
    tokenizer.save_pretrained(folder)
    plain = _load(folder, chat=False)
    assert plain.tokenize(PROMPT) == tokenizer(PROMPT)["input_ids"]
    assert plain.tokenize(PROMPT)[:2] != [1, 1] and plain.tokenize(PROMPT)[0] == 1
    chat = _load(folder)
    ids = chat.tokenize(chat.format_prompt(GenerationRequest(PROMPT)))
    assert ids.count(1) == 1 and ids[0] == 1  # the template's BOS only


def test_sampling_is_seeded(fp32_dir: Path) -> None:
    first = _answer(_load(fp32_dir, seed=3), max_new_tokens=6, ignore_eos=True, temperature=0.9)
    again = _answer(_load(fp32_dir, seed=3), max_new_tokens=6, ignore_eos=True, temperature=0.9)
    assert first.text == again.text and first.output_tokens == 6


def test_threads_reach_the_session_options(fp32_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overlays: list[dict[str, Any]] = []
    real, real_model = og.Config, og.Model

    class RecordingConfig:
        def __init__(self, path: str) -> None:
            self._config = real(path)

        def overlay(self, text: str) -> None:
            overlays.append(json.loads(text))
            self._config.overlay(text)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._config, name)

    monkeypatch.setattr(og, "Config", RecordingConfig)
    monkeypatch.setattr(og, "Model", lambda config: real_model(config._config))
    backend = _load(fp32_dir, threads=2)
    assert overlays == [{"model": {"decoder": {"session_options": {"intra_op_num_threads": 2}}}}]
    assert _answer(backend, max_new_tokens=2, ignore_eos=True).output_tokens == 2


def test_zero_new_tokens_generates_nothing(tiny: OnnxDecoderBackend) -> None:
    generation = _answer(tiny, max_new_tokens=0)
    assert (generation.text, generation.output_tokens, generation.token_times) == ("", 0, ())
    assert generation.prompt_tokens > 0 and generation.finished_at > generation.started_at


def test_context_is_capped_by_the_model(fp32_dir: Path) -> None:
    config = json.loads((fp32_dir / "genai_config.json").read_text())
    backend = _load(fp32_dir, context_length=10_000_000)
    assert backend.context_length == config["model"]["context_length"]


def test_bad_requests_are_user_errors(tiny: OnnxDecoderBackend, fp32_dir: Path) -> None:
    with pytest.raises(UserError, match="empty prompt"):
        _answer(tiny, "   ", max_new_tokens=2)
    with pytest.raises(UserError, match="context window of 256"):
        _answer(tiny, " ".join(["visa"] * 300), max_new_tokens=2)
    closed = _load(fp32_dir)
    closed.close()
    with pytest.raises(UserError, match="closed"):
        _answer(closed, max_new_tokens=2)


# --- providers ---------------------------------------------------------------------------------------------


def test_provider_choice() -> None:
    assert choose_provider(None, [], cuda_available=True) == "cpu"
    assert choose_provider(None, ["cuda"], cuda_available=True) == "cuda"
    assert choose_provider(None, ["cuda"], cuda_available=False) == "cpu"
    assert choose_provider(" CPU ", ["cuda"], cuda_available=True) == "cpu"
    assert choose_provider("cuda", [], cuda_available=True) == "cuda"
    with pytest.raises(UserError, match="onnxruntime-genai-cuda"):
        choose_provider("cuda", [], cuda_available=False)
    with pytest.raises(UserError, match="unknown execution provider 'tpu'"):
        choose_provider("tpu", [], cuda_available=True)


def test_cpu_provider_runs_and_missing_cuda_is_one_line(fp32_dir: Path) -> None:
    assert _load(fp32_dir, provider="cpu").provider == "cpu"
    if og.is_cuda_available():
        pytest.skip("this onnxruntime-genai build has CUDA")
    with pytest.raises(UserError) as raised:
        _load(fp32_dir, provider="cuda")
    assert "\n" not in str(raised.value)


# --- loading errors ----------------------------------------------------------------------------------------


def test_corrupt_onnx_file_is_one_line_user_error(fp32_dir: Path, tmp_path: Path) -> None:
    folder = copy_export(fp32_dir, tmp_path / "corrupt")
    (folder / "model.onnx").write_bytes((fp32_dir / "model.onnx").read_bytes()[:200])
    with pytest.raises(UserError, match="truncated or corrupt") as raised:
        _load(folder)
    assert "\n" not in str(raised.value)


def test_missing_tokenizer_is_one_line_user_error(fp32_dir: Path, tmp_path: Path) -> None:
    folder = copy_export(fp32_dir, tmp_path / "no-tokenizer")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="cannot load the tokenizer") as raised:
        _load(folder)
    assert "\n" not in str(raised.value)


def test_broken_genai_config_is_user_error(fp32_dir: Path, tmp_path: Path) -> None:
    folder = copy_export(fp32_dir, tmp_path / "bad-config")
    (folder / "genai_config.json").write_text("{not json")
    card = Registry([]).resolve(str(folder))
    with pytest.raises(UserError, match="not valid JSON"):
        load_decoder(card, folder, LoadOptions(threads=1))


def test_missing_onnxruntime_genai_names_the_extra(fp32_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    card = Registry([]).resolve(str(fp32_dir))
    with pytest.raises(MissingDependencyError, match=r"slm-eval\[onnx\]"):
        load_decoder(card, fp32_dir, LoadOptions(threads=1))


def test_encoder_cards_are_refused(fp32_dir: Path) -> None:
    card = default_registry().resolve("distilbert")
    with pytest.raises(UserError, match="onnxruntime-genai only"):
        onnx_decoder.load_decoder(card, fp32_dir, LoadOptions(threads=1))
