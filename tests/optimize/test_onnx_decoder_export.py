"""ONNX export of decoders with onnxruntime-genai's model builder: tiny seed architectures and the bundled SmolLM2."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime_genai")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from slm_eval.backends.base import GenerationRequest, LoadOptions  # noqa: E402
from slm_eval.backends.onnx_decoder import load_decoder  # noqa: E402
from slm_eval.errors import MissingDependencyError, UserError  # noqa: E402
from slm_eval.models.catalogue import default_registry  # noqa: E402
from slm_eval.models.registry import Registry  # noqa: E402
from slm_eval.optimize.decoder_parity import check_decoder_parity  # noqa: E402
from slm_eval.optimize.onnx_decoder_export import (  # noqa: E402
    MOBILE_OPTIONS,
    TOOLS,
    DecoderExport,
    export_decoder,
    supported_architectures,
)
from tests.tiny_models import (  # noqa: E402
    ARCHITECTURES,
    StepClock,
    TinyDecoders,
    build_tiny_bert,
    build_tiny_decoder,
    build_tiny_gpt2,
)

EXPORT_FILES = {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(params=list(ARCHITECTURES))
def seed_name(request: pytest.FixtureRequest) -> str:
    """The seed model whose architecture the tiny decoder copies."""
    return str(request.param)


def _genai_config(export: DecoderExport) -> dict[str, object]:
    config: dict[str, object] = json.loads((export.output_dir / "genai_config.json").read_text())["model"]
    return config


# --- tiny seed architectures -------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_export_writes_model_config_tokenizer_and_chat_template(
    tiny_decoders: TinyDecoders, seed_name: str, precision: str
) -> None:
    export = tiny_decoders.export(seed_name, precision)
    folder = export.output_dir
    assert EXPORT_FILES | {"chat_template.jinja"} <= set(export.files)
    assert export.files == {name: (folder / name).stat().st_size for name in export.files}
    assert export.total_bytes == sum(export.files.values())
    assert (export.precision, export.target, export.execution_provider) == (precision, "cpu", "cpu")
    assert export.source_format == "transformers"
    assert export.architecture == json.loads((export.source / "config.json").read_text())["architectures"][0]
    assert export.builder_options == {}
    assert set(export.tool_versions) == set(TOOLS)
    assert export.tool_versions["onnxruntime-genai"] != "absent"
    assert export.elapsed_s > 0
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    assert sum(export.op_counts.values()) == export.nodes == len(graph.node)
    assert export.op_counts["GroupQueryAttention"] == 2  # one per layer
    if precision == "fp32":
        assert "MatMulNBits" not in export.op_counts and export.op_counts["MatMul"] >= 2
    else:
        assert export.op_counts["MatMulNBits"] == 2 * 5 + 1  # qkv, o, gate, up, down per layer; the LM head
    document = export.to_dict()
    assert json.loads(json.dumps(document)) == document
    assert document["elapsed_s"]["label"] == "measured"
    assert document["tool_versions"] == dict(export.tool_versions)


def test_int4_is_smaller_than_fp32(tiny_decoders: TinyDecoders, seed_name: str) -> None:
    fp32 = tiny_decoders.export(seed_name, "fp32").files["model.onnx.data"]
    int4 = tiny_decoders.export(seed_name, "int4").files["model.onnx.data"]
    assert int4 < fp32 / 2


def test_genai_config_keeps_the_seed_shapes(tiny_decoders: TinyDecoders, seed_name: str) -> None:
    config = _genai_config(tiny_decoders.export(seed_name, "fp32"))
    decoder = config["decoder"]
    assert isinstance(decoder, dict)
    _, settings = ARCHITECTURES[seed_name]
    assert decoder["num_attention_heads"] == 4
    assert decoder["num_key_value_heads"] == settings["num_key_value_heads"]
    assert decoder["head_size"] == 16
    assert config["context_length"] == settings["max_position_embeddings"]
    assert config["type"] == ("phi3" if seed_name.startswith("phi") else "llama")
    assert config["eos_token_id"] == 2


def test_phi3_longrope_is_built_with_both_rotary_caches(tiny_decoders: TinyDecoders) -> None:
    export = tiny_decoders.export("phi-3-mini-128k", "fp32")
    graph = onnx.load(str(export.output_dir / "model.onnx"), load_external_data=False).graph
    (switch,) = [node for node in graph.node if node.op_type == "If"]  # short factors up to 4096 tokens, long beyond
    branches = {
        attribute.name: {out for node in onnx.helper.get_attribute_value(attribute).node for out in node.output}
        for attribute in switch.attribute
    }
    assert branches == {
        "then_branch": {"cos_cache_large", "sin_cache_large"},
        "else_branch": {"cos_cache_small", "sin_cache_small"},
    }


def test_phi3_config_saved_by_transformers5_exports_too(tmp_path: Path) -> None:
    source = build_tiny_decoder(tmp_path / "phi3-t5", "phi-3-mini-128k", hub_config=False)
    assert "rope_scaling" not in json.loads((source / "config.json").read_text())
    export = export_decoder(source, tmp_path / "out", "fp32", "cpu", cache_dir=tmp_path / "cache")
    assert _genai_config(export)["context_length"] == 131072
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == []  # the staged copy is removed
    assert check_decoder_parity(
        source, export.output_dir, ["what is a visa"], precision="fp32", max_new_tokens=4
    ).passed


def test_mobile_target_quantizes_the_embedding_and_runs(tiny_decoders: TinyDecoders) -> None:
    export = tiny_decoders.export("tinyllama-1.1b", "int4", "mobile")
    assert (export.target, export.execution_provider) == ("mobile", "cpu")
    assert export.builder_options == MOBILE_OPTIONS
    assert export.op_counts["GatherBlockQuantized"] == 1
    cpu = tiny_decoders.export("tinyllama-1.1b", "int4")
    assert export.files["model.onnx.data"] < cpu.files["model.onnx.data"]
    card = Registry([]).resolve(str(export.output_dir))
    backend = load_decoder(card, export.output_dir, LoadOptions(threads=1, context_length=128))
    assert backend.parameter_count == load_decoder(card, cpu.output_dir, LoadOptions(threads=1)).parameter_count
    (answer,) = backend.generate([GenerationRequest("what is a visa", max_new_tokens=4, ignore_eos=True)])
    assert answer.output_tokens == 4


def test_cuda_target_names_the_cuda_provider(tiny_decoders: TinyDecoders) -> None:
    export = tiny_decoders.export("mobilellama-1.4b", "fp32", "cuda")
    assert export.execution_provider == "cuda"
    decoder = _genai_config(export)["decoder"]
    assert isinstance(decoder, dict)
    assert "cuda" in decoder["session_options"]["provider_options"][0]


def test_export_reads_the_clock_it_is_given(tiny_decoders: TinyDecoders, tmp_path: Path) -> None:
    clock = StepClock()
    source = tiny_decoders.source("mobilellama-1.4b")
    export = export_decoder(source, tmp_path / "out", "fp32", "cpu", cache_dir=tmp_path / "cache", clock=clock)
    assert export.elapsed_s == pytest.approx(0.01)
    assert clock.readings == 2


def test_export_leaves_the_root_logger_alone(tiny_decoders: TinyDecoders, tmp_path: Path) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    export_decoder(tiny_decoders.source("tinyllama-1.1b"), tmp_path / "out", "int8", "cpu", cache_dir=tmp_path / "c")
    assert (list(root.handlers), root.level) == (handlers, level)  # ONNX Runtime's quantizer calls basicConfig


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [build_tiny_bert, build_tiny_gpt2], ids=["bert", "gpt2"])
def test_unsupported_architecture_names_the_supported_ones(build: object, tmp_path: Path) -> None:
    source = build(tmp_path / "model")  # type: ignore[operator]
    output = tmp_path / "out"
    with pytest.raises(UserError) as raised:
        export_decoder(source, output, "int4", "cpu", cache_dir=tmp_path / "cache")
    message = str(raised.value)
    assert "\n" not in message
    assert "cannot export" in message
    assert "LlamaForCausalLM" in message and "Phi3ForCausalLM" in message
    assert not any(output.iterdir())  # refused before the builder ran


def test_supported_architectures_come_from_the_builder() -> None:
    supported = supported_architectures()
    assert {"LlamaForCausalLM", "Phi3ForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"} <= set(supported)
    assert all(name.endswith("ForCausalLM") for name in supported)
    assert "GPT2LMHeadModel" not in supported


def test_bad_precision_target_and_sources(tiny_decoders: TinyDecoders, tmp_path: Path) -> None:
    source = tiny_decoders.source("tinyllama-1.1b")
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="unknown precision 'fp16'"):
        export_decoder(source, tmp_path / "a", "fp16", "cpu", cache_dir=cache)
    with pytest.raises(UserError, match="unknown target 'tpu'"):
        export_decoder(source, tmp_path / "a", "int4", "tpu", cache_dir=cache)
    with pytest.raises(UserError, match="mobile target stores quantized weights"):
        export_decoder(source, tmp_path / "a", "fp32", "mobile", cache_dir=cache)
    with pytest.raises(UserError, match="does not exist"):
        export_decoder(tmp_path / "nowhere", tmp_path / "a", "int4", "cpu", cache_dir=cache)
    text = tmp_path / "weights.bin"
    text.write_bytes(b"nothing")
    with pytest.raises(UserError, match=r"neither a transformers folder nor a \.gguf file"):
        export_decoder(text, tmp_path / "a", "int4", "cpu", cache_dir=cache)


def test_corrupt_gguf_is_one_line_user_error(tmp_path: Path) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(UserError, match="cannot read the GGUF file") as raised:
        export_decoder(source, tmp_path / "out", "int4", "cpu", cache_dir=tmp_path / "cache")
    assert "\n" not in str(raised.value)


def test_source_without_tokenizer_is_user_error(tiny_decoders: TinyDecoders, tmp_path: Path) -> None:
    source = tmp_path / "no-tokenizer"
    source.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (source / name).write_bytes((tiny_decoders.source("tinyllama-1.1b") / name).read_bytes())
    with pytest.raises(UserError, match="has no tokenizer"):
        export_decoder(source, tmp_path / "out", "int4", "cpu", cache_dir=tmp_path / "cache")


def test_missing_onnxruntime_genai_names_the_extra(
    tiny_decoders: TinyDecoders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tiny_decoders.source("tinyllama-1.1b")
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    with pytest.raises(MissingDependencyError, match=r"slm-eval\[onnx\]"):
        export_decoder(source, tmp_path / "out", "int4", "cpu", cache_dir=tmp_path / "cache")


# --- the real bundled SmolLM2 GGUF ---------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_gguf_exports_to_int4(smollm2_int4: DecoderExport, smollm2_gguf: Path) -> None:
    export = smollm2_int4
    assert (export.source, export.source_format, export.architecture) == (smollm2_gguf, "gguf", "LlamaForCausalLM")
    assert EXPORT_FILES | {"chat_template.jinja"} <= set(export.files)
    assert 60_000_000 < export.files["model.onnx.data"] < 120_000_000  # 134.5 M weights in 4 bits, plus scales
    assert export.op_counts["MatMulNBits"] == 30 * 5 + 1  # qkv, o, gate, up, down in 30 layers; the LM head
    assert export.op_counts["GatherBlockQuantized"] == 1  # the tied embedding shares the LM head's int4 weights
    assert export.op_counts["GroupQueryAttention"] == 30
    assert "<|im_start|>" in (export.output_dir / "chat_template.jinja").read_text()


@pytest.mark.slow
def test_smollm2_int4_answers_through_the_onnx_backend(smollm2_int4: DecoderExport) -> None:
    card = default_registry().resolve("smollm2-135m-instruct")
    clock = StepClock()
    backend = load_decoder(card, smollm2_int4.output_dir, LoadOptions(threads=2, context_length=512, clock=clock))
    assert backend.chat and backend.parameter_count == 134_515_008
    pieces: list[str] = []
    (answer,) = backend.generate(
        [GenerationRequest("What is a passport?", max_new_tokens=12)], lambda _, piece: pieces.append(piece)
    )
    assert answer.text.strip() and "".join(pieces) == answer.text
    assert answer.prompt_text.startswith("<|im_start|>system\n")
    assert answer.prompt_tokens > 20  # the chat template's system message is counted
    assert 1 <= answer.output_tokens <= 12 and answer.output_tokens == len(answer.token_times)
    assert answer.time_to_first_token_s is not None and answer.time_to_first_token_s > 0
