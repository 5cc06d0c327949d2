"""PyTorch quantization: dynamic int8 and torchao int8/int4 on tiny decoders and encoders and the bundled MiniLM.

Each variant is written as a store folder would be, loaded back through the transformers backend (the path
``--model <model>@<variant>`` takes), and compared with the float32 original on fixed inputs. The cosine
bounds are those measured here with a margin (tiny Llama: dynamic int8 0.998, torchao int8 0.9998, torchao
int4 0.97; tiny DistilBERT QA head: 0.999+ / 0.99; MiniLM QA head: dynamic int8 0.89, torchao int8 0.9995).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from slm_eval.backends.base import EncoderRequest, GenerationRequest, LoadOptions
from slm_eval.backends.transformers_quantized import (
    RECIPE_FILE,
    WEIGHTS_FILE,
    load_quantized,
    read_recipe,
)
from slm_eval.errors import UserError
from slm_eval.models.registry import ModelCard, card_for_path
from slm_eval.optimize.quantize_methods import QuantizeJob, QuantizeResult
from slm_eval.optimize.quantize_torch import (
    closeness,
    quantize_bitsandbytes,
    quantize_dynamic_int8,
    quantize_torchao,
)
from tests.optimize.tiny_encoders import build_tiny_encoder, minilm
from tests.tiny_models import StepClock, build_tiny_decoder, tiny_tokenizer

Runner = Callable[[QuantizeJob], QuantizeResult]
PROMPTS = ("what is a visa", "The officer checks the passport at the border and stamps the entry permit.")
QA = EncoderRequest("Where was the van stopped?", "The van was stopped at the northern checkpoint.")
# (runner, bits, the least centred cosine of the logits against float32 on the tiny decoder)
DECODER_CASES = [
    pytest.param(quantize_dynamic_int8, 8, 0.99, id="dynamic-int8"),
    pytest.param(quantize_torchao, 8, 0.999, id="torchao-int8"),
    pytest.param(quantize_torchao, 4, 0.93, id="torchao-int4"),
]


def _quantize(runner: Runner, card: ModelCard, source: Path, out: Path, bits: int, **options: Any) -> QuantizeResult:
    job = QuantizeJob(
        card=card,
        source=source,
        source_format="transformers",
        bits=bits,
        output_dir=out,
        cache_dir=out.parent / "cache",
        **options,
    )
    return runner(job)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random TinyLlama-shaped decoder (grouped-query attention, untied output head)."""
    return build_tiny_decoder(tmp_path_factory.mktemp("tiny-llama") / "model", "tinyllama-1.1b")


@pytest.fixture(scope="module")
def tied_decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama whose output head is its embedding table, as SmolLM2's is."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tied-llama") / "model"
    tokenizer = tiny_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(11)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DistilBERT encoder (no token type ids, no task head)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-distilbert") / "model", "distilbert-base-uncased")


def _decoder_logits(model: Any, tokenizer: Any) -> Any:
    import torch

    with torch.no_grad():
        return torch.cat([model(**tokenizer(text, return_tensors="pt")).logits[0] for text in PROMPTS])


@pytest.mark.parametrize(("runner", "bits", "least_cosine"), DECODER_CASES)
def test_a_tiny_decoder_variant_loads_through_the_backend_and_stays_close_to_float32(
    tiny_llama: Path, tmp_path: Path, runner: Runner, bits: int, least_cosine: float
) -> None:
    import transformers

    from slm_eval.backends.transformers import load

    out = tmp_path / "variant"
    result = _quantize(runner, card_for_path(tiny_llama), tiny_llama, out, bits)

    assert result.entry is None and not result.requantized
    assert result.facts["quantized_layers"] == 14  # 2 layers x (q, k, v, o, gate, up, down)
    assert result.facts["check"]["reload_max_abs_diff"] == 0.0
    assert result.facts["check"]["centred_cosine"] >= least_cosine
    assert "output head: lm_head" in result.kept_precision
    assert "embeddings: model.embed_tokens" in result.kept_precision
    assert (out / RECIPE_FILE).is_file() and not (out / "model.safetensors").exists()
    assert result.facts["weights_bytes"]["value"] == (out / WEIGHTS_FILE).stat().st_size

    original = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    recipe = read_recipe(out)
    assert recipe is not None and recipe.bits == bits and "lm_head" not in recipe.modules
    variant = load_quantized(out, recipe, transformers.AutoModelForCausalLM)
    cosine, _ = closeness(_decoder_logits(original, tokenizer), _decoder_logits(variant, tokenizer))
    assert cosine >= least_cosine

    backend = load(card_for_path(out), out, LoadOptions(clock=StepClock(), threads=1))
    assert backend.parameter_count == sum(parameter.numel() for parameter in original.parameters())
    request = GenerationRequest("what is a visa", max_new_tokens=6, ignore_eos=True)
    generation = backend.generate([request])[0]
    assert generation.output_tokens == 6
    if runner is quantize_dynamic_int8:
        assert backend.device == "cpu"  # its kernels exist for the CPU only, even where CUDA is present


def test_4_bits_are_smaller_on_disk_than_8_and_8_than_float32(tiny_llama: Path, tmp_path: Path) -> None:
    card = card_for_path(tiny_llama)
    int8 = _quantize(quantize_torchao, card, tiny_llama, tmp_path / "int8", 8)
    int4 = _quantize(quantize_torchao, card, tiny_llama, tmp_path / "int4", 4, block_size=64)

    float32 = (tiny_llama / "model.safetensors").stat().st_size
    assert int4.facts["weights_bytes"]["value"] < int8.facts["weights_bytes"]["value"] < float32
    assert int4.quant_type == "torchao int4 weight-only (asymmetric, group 64)"
    assert int4.facts["layout"] == {"group_size": 64, "per_row_layers": []}
    assert "torchao" in int4.facts["tool_versions"]


def test_a_tied_output_head_stays_tied_to_the_embeddings(tied_decoder: Path, tmp_path: Path) -> None:
    import transformers

    out = tmp_path / "variant"
    result = _quantize(quantize_torchao, card_for_path(tied_decoder), tied_decoder, out, 4)

    assert "tied: lm_head.weight = model.embed_tokens.weight" in result.kept_precision
    assert result.facts["check"]["reload_max_abs_diff"] == 0.0
    recipe = read_recipe(out)
    assert recipe is not None and dict(recipe.tied) == {"lm_head.weight": "model.embed_tokens.weight"}
    model = load_quantized(out, recipe, transformers.AutoModelForCausalLM)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def _qa_logits(model: Any, tokenizer: Any) -> Any:
    import inspect

    import torch

    encoded = tokenizer(QA.text, QA.context, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    with torch.no_grad():
        output = model(**{name: value for name, value in encoded.items() if name in accepted})
    return torch.cat([output.start_logits, output.end_logits], dim=-1)


@pytest.mark.parametrize(
    ("runner", "bits", "least_cosine"),
    [
        pytest.param(quantize_dynamic_int8, 8, 0.99, id="dynamic-int8"),
        pytest.param(quantize_torchao, 4, 0.98, id="torchao-int4"),
    ],
)
def test_a_tiny_encoder_variant_keeps_its_seeded_head_and_answers(
    tiny_distilbert: Path, tmp_path: Path, runner: Runner, bits: int, least_cosine: float
) -> None:
    from slm_eval.backends.transformers import load
    from slm_eval.backends.transformers_encoder import TransformersEncoderBackend, load_head_model

    card = card_for_path(tiny_distilbert)
    out = tmp_path / "variant"
    result = _quantize(runner, card, tiny_distilbert, out, bits, encoder_task="qa", seed=5)

    assert result.facts["head_trained"] is False
    assert "output head: qa_outputs" in result.kept_precision
    original = load_head_model(card, tiny_distilbert, "qa", seed=5)
    variant = load_head_model(card_for_path(out), out, "qa", seed=99)  # the stored head, not seed 99's
    assert variant.trained is False
    cosine, _ = closeness(_qa_logits(original.model, original.tokenizer), _qa_logits(variant.model, variant.tokenizer))
    assert cosine >= least_cosine

    backend = load(card_for_path(out), out, LoadOptions(clock=StepClock(), encoder_task="qa", threads=1))
    assert isinstance(backend, TransformersEncoderBackend)
    assert backend.head_trained is False
    assert backend.parameter_count == sum(parameter.numel() for parameter in original.model.parameters())
    prediction = backend.predict([QA])[0]
    assert prediction.text in QA.context or prediction.text == ""


@pytest.mark.parametrize(
    ("runner", "task", "least_cosine"),
    [
        pytest.param(quantize_dynamic_int8, "qa", 0.85, id="dynamic-int8-qa"),
        pytest.param(quantize_torchao, "ner", 0.999, id="torchao-int8-ner"),
    ],
)
def test_the_bundled_minilm_at_8_bits_loads_and_predicts(
    tmp_path: Path, runner: Runner, task: Any, least_cosine: float
) -> None:
    from slm_eval.backends.transformers import load
    from slm_eval.backends.transformers_encoder import TransformersEncoderBackend

    card, source = minilm()
    out = tmp_path / "variant"
    result = _quantize(runner, card, source, out, 8, encoder_task=task)

    assert result.facts["quantized_layers"] == 36  # 6 layers x (query, key, value, output, intermediate, output)
    assert result.facts["check"]["centred_cosine"] >= least_cosine
    assert result.facts["check"]["reload_max_abs_diff"] == 0.0
    stored, float32 = result.facts["weights_bytes"]["value"], result.facts["float32_tensor_bytes"]["value"]
    assert stored < 0.7 * float32  # the 47 MB word embedding table stays float32
    backend = load(variant_card(card, out), out, LoadOptions(clock=StepClock(), encoder_task=task, threads=1))
    assert isinstance(backend, TransformersEncoderBackend)
    request = QA if task == "qa" else EncoderRequest("Maria Gonzalez arrived from Madrid on flight IB3166.")
    prediction = backend.predict([request])[0]
    assert prediction.input_tokens > 5
    if task == "ner":
        assert backend.labels and backend.labels[0] == "O"
        with pytest.raises(UserError, match="quantized with its ner head, not a qa head: pass --task ner"):
            load(variant_card(card, out), out, LoadOptions(clock=StepClock(), encoder_task="qa"))


def variant_card(parent: ModelCard, folder: Path) -> ModelCard:
    """The card a store variant of ``parent`` in ``folder`` gets (as ``--model parent@variant`` resolves it)."""
    from slm_eval.models.registry import variant_card as card_of
    from slm_eval.models.store import Variant

    manifest = {"format": "transformers", "method": "test", "entry": None}
    return card_of(parent, Variant(parent.name, folder.name, folder, manifest))


def test_bitsandbytes_on_a_cpu_only_machine_names_the_cpu_alternative(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"needs a CUDA GPU.*use --method torchao"):
        _quantize(quantize_bitsandbytes, card_for_path(tiny_llama), tiny_llama, tmp_path / "bnb", 4)
    assert not (tmp_path / "bnb").exists()


def test_a_bitsandbytes_variant_is_refused_on_a_cpu_only_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = {"method": "bnb", "bits": 4, "weights": "nf4", "architecture": "LlamaForCausalLM", "kind": "decoder"}
    (tmp_path / RECIPE_FILE).write_text(json.dumps(recipe), encoding="utf-8")
    with pytest.raises(UserError, match=r"bitsandbytes, which runs only on a CUDA GPU.*--method torchao"):
        read_recipe(tmp_path)


@pytest.mark.parametrize(
    ("runner", "bits", "message"),
    [
        (quantize_dynamic_int8, 4, "--bits 4 is not supported by torch-dynamic-int8: choose one of 8"),
        (quantize_torchao, 2, "--bits 2 is not supported by torchao: choose one of 4, 8"),
        (quantize_bitsandbytes, 3, "--bits 3 is not supported by bnb: choose one of 4, 8"),
    ],
)
def test_unsupported_bits_are_refused_with_the_supported_ones(
    tiny_llama: Path, tmp_path: Path, runner: Runner, bits: int, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        _quantize(runner, card_for_path(tiny_llama), tiny_llama, tmp_path / "out", bits)


def test_a_block_size_with_8_bit_torchao_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--block-size applies to 4-bit torchao weights"):
        _quantize(quantize_torchao, card_for_path(tiny_llama), tiny_llama, tmp_path / "out", 8, block_size=32)


@pytest.fixture(scope="module")
def int8_variant(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8-variant") / "variant"
    _quantize(quantize_dynamic_int8, card_for_path(tiny_llama), tiny_llama, out, 8)
    return out


def test_a_recipe_with_an_unknown_method_is_refused(int8_variant: Path, tmp_path: Path) -> None:
    from slm_eval.backends.transformers import load

    copy = shutil.copytree(int8_variant, tmp_path / "copy")
    recipe = json.loads((copy / RECIPE_FILE).read_text(encoding="utf-8"))
    (copy / RECIPE_FILE).write_text(json.dumps({**recipe, "method": "gptq"}), encoding="utf-8")
    with pytest.raises(UserError, match="unknown quantization method 'gptq': this version loads torch-dynamic-int8"):
        load(card_for_path(copy), copy, LoadOptions(clock=StepClock()))


def test_a_variant_is_not_quantized_again_and_plain_transformers_refuses_it(int8_variant: Path, tmp_path: Path) -> None:
    import transformers

    with pytest.raises(UserError, match="already quantized"):
        _quantize(quantize_torchao, card_for_path(int8_variant), int8_variant, tmp_path / "again", 4)
    with pytest.raises(OSError):  # no model.safetensors: never a model with random weights
        transformers.AutoModelForCausalLM.from_pretrained(int8_variant, use_safetensors=True)


def test_a_variant_with_a_missing_tensor_or_another_dtype_is_refused(int8_variant: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from slm_eval.backends.transformers import load

    with pytest.raises(UserError, match="runs in float32: drop --dtype bfloat16"):
        load(card_for_path(int8_variant), int8_variant, LoadOptions(clock=StepClock(), dtype="bfloat16"))
    copy = shutil.copytree(int8_variant, tmp_path / "copy")
    tensors = load_file(copy / WEIGHTS_FILE)
    del tensors["model.norm.weight"]
    save_file(tensors, copy / WEIGHTS_FILE)
    with pytest.raises(UserError, match=r"does not match its recipe: missing model\.norm\.weight"):
        load(card_for_path(copy), copy, LoadOptions(clock=StepClock()))


def test_the_tensor_types_of_a_gguf_file_are_counted(smollm2_gguf: Path) -> None:
    from slm_eval.optimize.quantize_torch import gguf_tensor_types

    assert gguf_tensor_types(smollm2_gguf) == {"Q4_1": 210, "F32": 61, "Q8_0": 1}


@pytest.mark.slow
def test_smollm2_from_its_gguf_at_8_bits_is_a_recorded_requantization_that_still_answers(
    smollm2_gguf: Path, tmp_path: Path
) -> None:
    from slm_eval.backends.transformers import load
    from slm_eval.models.catalogue import default_registry

    card = default_registry().resolve("smollm2-135m-instruct")
    out = tmp_path / "pytorch-int8"
    job = QuantizeJob(
        card=card, source=smollm2_gguf, source_format="gguf", bits=8, output_dir=out, cache_dir=tmp_path / "cache"
    )
    result = quantize_torchao(job)

    assert result.requantized and result.facts["source_tensor_types"]["Q4_1"] == 210
    assert result.facts["quantized_layers"] == 210  # 30 layers x 7 projections; the tied head stays float32
    assert result.facts["check"]["centred_cosine"] >= 0.998  # measured 0.9994
    assert "tied: lm_head.weight = model.embed_tokens.weight" in result.kept_precision
    backend = load(variant_card(card, out), out, LoadOptions(clock=StepClock(), threads=2))
    assert backend.parameter_count == 134_515_008
    answer = backend.generate([GenerationRequest("What document must a traveller show at the border?", 12)])[0]
    assert answer.output_tokens > 0 and answer.text.strip()
