"""Tiny random decoders with the seed models' real architecture settings, for the ONNX export and backend tests.

Each one is saved as safetensors with a byte-level BPE tokenizer and a chat template, so it loads like a real
transformers folder. The tokenizer is byte-level BPE (like SmolLM2's) because onnxruntime-genai's tokenizer
reads BPE and Unigram ``tokenizer.json`` files but not word-level ones.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMPT = "what is a visa"
SPECIALS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} </s> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
_CORPUS = [
    "what is a visa passport border officer travel document stamp entry exit permit the of and to",
    "The officer checks the passport at the border and stamps the entry permit.",
    "A visa is a travel document; a permit allows entry or exit.",
]
VOCAB = 300
# Printable ASCII in the byte-level alphabet (a space is "Ġ", a newline "Ċ"): with no token for a lone byte
# of a multi-byte character, whatever a random model generates decodes to valid text.
ASCII_ALPHABET = [chr(code) for code in range(0x21, 0x7F)] + ["\u0120", "\u010a"]
HEAD_DIM = 16  # hidden 64 over 4 heads
# Phi-3-mini-128k scales its rotary embedding with LongRoPE: one factor per rotary frequency (head_dim / 2),
# short factors up to the original 4k context and long ones beyond it.
_LONGROPE = {
    "rope_type": "longrope",
    "rope_theta": 10000.0,
    "short_factor": [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.8, 2.5],
    "long_factor": [1.0, 1.2, 1.6, 2.4, 4.0, 8.0, 16.0, 32.0],
    "original_max_position_embeddings": 4096,
}
# Each seed decoder's real architecture settings, scaled down to hidden 64, 2 layers and 4 heads.
ARCHITECTURES: dict[str, tuple[str, dict[str, object]]] = {
    "phi-3-mini-128k": (
        "Phi3Config",
        {
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_parameters": _LONGROPE,
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
            "num_key_value_heads": 2,  # grouped-query attention (TinyLlama: 32 heads share 4 key/value heads)
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


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer of :data:`VOCAB` entries over printable ASCII, trained on a few sentences."""
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    raw = tokenizers.Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=ASCII_ALPHABET,
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS * 4, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[3:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_decoder(folder: Path, seed_name: str, *, hub_config: bool = True, seed: int = 7) -> Path:
    """Save a tiny random decoder shaped like ``seed_name`` (a key of :data:`ARCHITECTURES`) in ``folder``.

    With ``hub_config`` a LongRoPE config is rewritten as Phi-3-mini-128k's hub ``config.json`` has it
    (``rope_scaling`` with ``"type": "longrope"``); without it, it stays as transformers 5 saves it.
    """
    import torch
    import transformers

    config_class, settings = ARCHITECTURES[seed_name]
    tokenizer = tiny_tokenizer()
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        **settings,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # larger weights than the default init, so the logits are not all nearly equal
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.1)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if hub_config:
        _hub_rope_scaling(folder / "config.json")
    return folder


def _hub_rope_scaling(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    rope = data.get("rope_parameters", {})
    if rope.get("rope_type") != "longrope":
        return
    del data["rope_parameters"]
    data["rope_scaling"] = {
        "type": "longrope",
        "short_factor": rope["short_factor"],
        "long_factor": rope["long_factor"],
    }
    data["rope_theta"] = rope["rope_theta"]
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def build_tiny_gpt2(folder: Path) -> Path:
    """Save a tiny random GPT-2 (a decoder the model builder has no branch for) in ``folder``."""
    import torch
    import transformers

    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=128)
    torch.manual_seed(7)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def build_tiny_bert(folder: Path) -> Path:
    """Save a tiny random BERT masked-LM (an architecture the ONNX decoder export refuses) in ``folder``."""
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    torch.manual_seed(7)
    transformers.BertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    return folder


class StepClock:
    """A clock that moves forward 0.01 s at each reading."""

    def __init__(self) -> None:
        self.readings = 0

    def now(self) -> float:
        self.readings += 1
        return self.readings * 0.01


class TinyDecoders:
    """Builds each tiny decoder and each of its ONNX exports once, on first use, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sources: dict[str, Path] = {}
        self._exports: dict[tuple[str, str, str], Any] = {}

    def source(self, seed_name: str) -> Path:
        """The transformers folder of the tiny ``seed_name`` decoder."""
        if seed_name not in self._sources:
            self._sources[seed_name] = build_tiny_decoder(self.root / seed_name, seed_name)
        return self._sources[seed_name]

    def export(self, seed_name: str, precision: str, target: str = "cpu") -> Any:
        """The :class:`~slm_eval.optimize.onnx_decoder_export.DecoderExport` of one precision and target."""
        from slm_eval.optimize.onnx_decoder_export import export_decoder

        key = (seed_name, precision, target)
        if key not in self._exports:
            output = self.root / f"{seed_name}-{precision}-{target}"
            self._exports[key] = export_decoder(
                self.source(seed_name), output, precision, target, cache_dir=self.root / "cache"
            )
        return self._exports[key]


def copy_export(folder: Path, destination: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A copy of an export folder, with ``edit`` applied to its ``genai_config.json``."""
    shutil.copytree(folder, destination)
    if edit is not None:
        path = destination / "genai_config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        edit(config)
        path.write_text(json.dumps(config), encoding="utf-8")
    return destination


def scale_initializer(folder: Path, name_part: str, factor: float) -> str:
    """Multiply the first ONNX initializer whose name holds ``name_part`` by ``factor``, in place; its name."""
    import onnx
    from onnx import numpy_helper

    path = folder / "model.onnx"
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if name_part in tensor.name:
            values = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array((values * factor).astype(values.dtype), tensor.name))
            break
    else:
        raise AssertionError(f"no initializer named like {name_part!r} in {path}")
    (folder / "model.onnx.data").unlink()
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data"
    )
    return str(tensor.name)
