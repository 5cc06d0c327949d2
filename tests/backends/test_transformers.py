"""The transformers backend on tiny random Phi3 and Llama decoders, and on the real bundled SmolLM2 GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from slm_eval.backends import transformers as backend_module  # noqa: E402
from slm_eval.backends.base import Generation, GenerationRequest, LoadOptions  # noqa: E402
from slm_eval.backends.catalogue import choose_backend  # noqa: E402
from slm_eval.backends.transformers import TransformersBackend  # noqa: E402
from slm_eval.errors import UserError  # noqa: E402
from slm_eval.metrics.timing import Clock  # noqa: E402
from slm_eval.models.catalogue import default_registry  # noqa: E402
from slm_eval.models.registry import ModelCard, Registry  # noqa: E402
from tests.conftest import RunCli  # noqa: E402

PROMPT = "what is a visa"
WORDS = [
    *("what", "is", "a", "visa", "passport", "border", "officer", "travel", "document"),
    *("stamp", "entry", "exit", "permit", "the", "of", "and", "to"),
]
SPECIALS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} </s> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
VOCAB = 64
# Each seed decoder's real architecture settings, scaled down to hidden 64, 2 layers and 4 heads.
ARCHITECTURES: dict[str, tuple[str, dict[str, object]]] = {
    "phi-3-mini": (
        "Phi3Config",
        {
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            "max_position_embeddings": 4096,
            "original_max_position_embeddings": 4096,
            "num_key_value_heads": 4,
            "attention_bias": False,
        },
    ),
    "tinyllama-1.1b": (
        "LlamaConfig",
        {
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            "max_position_embeddings": 2048,
            "num_key_value_heads": 1,  # grouped-query attention: 32 heads share 4 key/value heads
            "attention_bias": False,
        },
    ),
    "mobilellama-1.4b": (
        "LlamaConfig",
        {
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "max_position_embeddings": 2048,
            "num_key_value_heads": 4,  # full multi-head attention
            "attention_bias": False,
        },
    ),
}


class StepClock:
    """A clock that moves forward 0.01 s at each reading."""

    def __init__(self) -> None:
        self.readings = 0

    def now(self) -> float:
        self.readings += 1
        return self.readings * 0.01


def _tokenizer() -> object:
    vocab = {token: index for index, token in enumerate(SPECIALS + WORDS)}
    for index in range(len(vocab), VOCAB):
        vocab[f"w{index}"] = index
    model = tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>")
    raw = tokenizers.Tokenizer(model)
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    raw.decoder = tokenizers.decoders.WordPiece(prefix="##")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[3:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _build(folder: Path, seed_name: str, eos_token_id: int = 2) -> Path:
    config_class, settings = ARCHITECTURES[seed_name]
    config = getattr(transformers, config_class)(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        bos_token_id=1,
        eos_token_id=eos_token_id,
        pad_token_id=2,
        **settings,
    )
    torch.manual_seed(7)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = eos_token_id
    model.save_pretrained(folder, safe_serialization=True)
    _tokenizer().save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def _load(folder: Path, clock: Clock | None = None, **changes: object) -> TransformersBackend:
    card = Registry([]).resolve(str(folder))
    settings: dict[str, object] = {"threads": 1, "context_length": 256, **changes}
    if clock is not None:
        settings["clock"] = clock
    options = LoadOptions(**settings)  # type: ignore[arg-type]
    return backend_module.load(card, card.source.locate(folder), options)


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def seed_name(request: pytest.FixtureRequest) -> str:
    """The seed model whose architecture the tiny decoder copies."""
    return str(request.param)


@pytest.fixture(scope="module")
def tiny_folder(seed_name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random decoder of one seed architecture, saved as safetensors with its tokenizer."""
    return _build(tmp_path_factory.mktemp(seed_name), seed_name)


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path) -> TransformersBackend:
    """The tiny decoder loaded once per architecture, on a stepping clock."""
    return _load(tiny_folder, clock=StepClock())


def _answer(backend: TransformersBackend, **changes: object) -> Generation:
    (generation,) = backend.generate([GenerationRequest(PROMPT, **changes)])  # type: ignore[arg-type]
    return generation


# --- tiny random seed architectures --------------------------------------------------------------------


def test_local_folder_resolves_to_the_transformers_backend(tiny_folder: Path) -> None:
    card = Registry([]).resolve(str(tiny_folder))
    assert card.kind == "decoder"
    assert card.architecture.endswith("ForCausalLM")
    assert choose_backend(card, None).name == "transformers"


def test_load_declares_capabilities_and_counts_parameters(tiny: TransformersBackend) -> None:
    assert tiny.name == "transformers"
    assert tiny.capabilities.generate and tiny.capabilities.streaming
    assert tiny.capabilities.chat_template and tiny.chat
    assert tiny.capabilities.local and tiny.capabilities.token_counts == "exact"
    assert tiny.parameter_count is not None and 10_000 < tiny.parameter_count < 100_000
    assert torch.get_num_threads() == 1


def test_greedy_generation_is_deterministic_and_timed(tiny: TransformersBackend) -> None:
    pieces: list[str] = []
    (first,) = tiny.generate(
        [GenerationRequest(PROMPT, max_new_tokens=6, ignore_eos=True)], lambda index, piece: pieces.append(piece)
    )
    second = _answer(tiny, max_new_tokens=6, ignore_eos=True)
    assert first.text == second.text and first.text.strip()
    assert "".join(pieces) == first.text
    assert first.output_tokens == 6 == len(first.token_times)
    assert first.finish_reason == "length"
    assert first.prompt_text.startswith("<s><|user|> what is a visa </s>")
    assert first.prompt_tokens == len(tiny.tokenize(first.prompt_text)) == 8
    assert list(first.token_times) == sorted(set(first.token_times))
    assert first.started_at < first.token_times[0] <= first.finished_at
    assert first.time_to_first_token_s is not None and first.time_to_first_token_s > 0
    assert first.time_per_output_token_s is not None and first.time_per_output_token_s > 0


def test_ignore_eos_gives_exactly_max_new_tokens(tiny: TransformersBackend) -> None:
    generation = _answer(tiny, max_new_tokens=12, ignore_eos=True)
    assert generation.output_tokens == 12
    assert generation.finish_reason == "length"


def test_stop_string_cuts_the_output(tiny: TransformersBackend) -> None:
    words = _answer(tiny, max_new_tokens=8, ignore_eos=True).text.split()
    stop = words[2]
    cut = _answer(tiny, max_new_tokens=8, ignore_eos=True, stop=(stop,))
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert cut.text.split() == words[: words.index(stop)]
    # Generation ends at the token that completed the stop string (special tokens decode to no text).
    assert words.index(stop) + 1 <= cut.output_tokens < 8


def test_end_of_sequence_token_ends_the_output(seed_name: str, tiny_folder: Path, tmp_path: Path) -> None:
    words = _answer(_load(tiny_folder), max_new_tokens=8, ignore_eos=True).text.split()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_folder)
    eos_id = tokenizer.convert_tokens_to_ids(words[3])
    backend = _load(_build(tmp_path / "eos", seed_name, eos_token_id=eos_id))
    generation = _answer(backend, max_new_tokens=8)
    assert generation.finish_reason == "stop"
    assert generation.output_tokens < 8  # the end-of-sequence token itself is not counted
    assert generation.text.split() == words[: words.index(words[3])]
    assert _answer(backend, max_new_tokens=8, ignore_eos=True).output_tokens == 8


def test_plain_completion_without_chat(tiny_folder: Path) -> None:
    backend = _load(tiny_folder, chat=False)
    assert not backend.chat and not backend.capabilities.chat_template
    generation = _answer(backend, max_new_tokens=3, ignore_eos=True)
    assert generation.prompt_text == PROMPT
    assert generation.output_tokens == 3


def test_threads_and_bfloat16_are_honoured(tiny_folder: Path) -> None:
    backend = _load(tiny_folder, threads=2, dtype="bfloat16")
    assert torch.get_num_threads() == 2
    assert next(backend._model.parameters()).dtype == torch.bfloat16
    assert _answer(backend, max_new_tokens=2, ignore_eos=True).output_tokens == 2
    torch.set_num_threads(1)


def test_bad_requests_and_options_are_user_errors(tiny: TransformersBackend, tiny_folder: Path) -> None:
    with pytest.raises(UserError, match="empty prompt"):
        _answer_prompt(tiny, "   ")
    with pytest.raises(UserError, match="context window of 256"):
        _answer_prompt(tiny, " ".join(["visa"] * 300))
    with pytest.raises(UserError, match="unknown dtype 'float8'"):
        _load(tiny_folder, dtype="float8")


def _answer_prompt(backend: TransformersBackend, prompt: str) -> Generation:
    (generation,) = backend.generate([GenerationRequest(prompt, max_new_tokens=2)])
    return generation


# --- loading errors --------------------------------------------------------------------------------------


def test_pickled_weights_are_refused(tiny_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    for item in tiny_folder.iterdir():
        if item.name != "model.safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(UserError, match="safetensors only"):
        _load(folder)


def test_missing_tokenizer_is_user_error(tiny_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (folder / name).write_bytes((tiny_folder / name).read_bytes())
    with pytest.raises(UserError, match="cannot load the tokenizer"):
        _load(folder)


def test_hub_id_offline_is_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    card = default_registry().resolve("phi-3-mini")
    with pytest.raises(UserError) as raised:
        backend_module.load(card, None, LoadOptions(threads=1))
    message = str(raised.value)
    assert (
        message == "microsoft/Phi-3-mini-128k-instruct is not available offline: download it first or give a local path"
    )


def test_api_cards_are_refused() -> None:
    card: ModelCard = default_registry().resolve("grok-3-mini-fast")
    with pytest.raises(UserError, match="runs local models only"):
        backend_module.load(card, None, LoadOptions(threads=1))


# --- the real bundled SmolLM2 GGUF, dequantized --------------------------------------------------------------


@pytest.mark.slow
def test_cli_quick_test_smollm2_gguf_through_transformers(run_cli: RunCli) -> None:
    result = run_cli(
        "quick-test", "-m", "smollm2-135m-instruct", "-i", "What is a visa?", "--backend", "transformers",
        "--max-new-tokens", "8", "--json", "--threads", "1",
    )  # fmt: skip
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["backend"] == "transformers"
    assert data["threads"] == 1
    (answer,) = data["results"]
    assert answer["output"].strip()
    assert 1 <= answer["output_tokens"] <= 8
    assert answer["prompt_tokens"] > 10  # the chat template is counted
    assert answer["time_to_first_token"]["value"] > 0
