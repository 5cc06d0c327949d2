"""The suitability check: groups counted from file headers, what each method keeps, and the verdicts.

Real models: the bundled MiniLM (transformers folder) and SmolLM2 (Q4_1 GGUF); hand-written files for the
exact counts: a safetensors folder, a GGUF file and two ONNX graphs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard, Registry
from slm_eval.optimize.quantize_methods import METHODS
from slm_eval.optimize.suitability import (
    ENCODER_4BIT_MIN_PARAMETERS,
    MIN_QUANTIZED_SHARE,
    Suitability,
    check_suitability,
    classify,
)
from slm_eval.optimize.suitability_output import suitability_table
from slm_eval.optimize.weight_inventory import TensorInfo, read_inventory
from tests.optimize.tiny_encoders import minilm

MINILM_GROUPS = {  # parameters and tensors of all-MiniLM-L6-v2 (BertModel: 6 layers, hidden 384, 30,522 tokens)
    "embeddings": (30522 * 384 + 512 * 384 + 2 * 384, 3),
    "norm": (13 * 2 * 384, 26),
    "linear": (6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 384, 37),  # the pooler's dense layer is one too
    "other": (6 * (4 * 384 + 1536 + 384) + 384, 38),  # biases, and position_ids (a buffer: no parameters)
}


def _groups(check: Suitability) -> dict[str, tuple[int, int]]:
    return {group.name: (group.parameters, group.tensors) for group in check.groups}


def _figures(document: Any) -> list[dict[str, Any]]:
    """Every figure (a dict with value, unit and label) anywhere in a JSON document."""
    if isinstance(document, dict):
        if set(document) == {"value", "unit", "label"}:
            return [document]
        return [figure for value in document.values() for figure in _figures(value)]
    if isinstance(document, list):
        return [figure for value in document for figure in _figures(value)]
    return []


@pytest.fixture(scope="module")
def minilm_model() -> tuple[ModelCard, Path]:
    return minilm()


@pytest.fixture(scope="module")
def smollm2() -> tuple[ModelCard, Path]:
    card = default_registry().resolve("smollm2-135m-instruct")
    try:
        return card, card.source.locate(Path("unused"))
    except UserError as exc:
        pytest.skip(f"the bundled SmolLM2 is not installed: {exc}")


def test_minilm_4bit_warns_that_it_is_too_small_and_mostly_embeddings(minilm_model: tuple[ModelCard, Path]) -> None:
    card, source = minilm_model
    check = check_suitability(card, source, "transformers", METHODS["torchao"], 4)
    assert check.verdict == "warning"
    assert check.reasons == ()
    assert _groups(check) == MINILM_GROUPS
    assert check.parameters == card.parameters == 22_713_216 < ENCODER_4BIT_MIN_PARAMETERS
    assert any("4-bit costs more accuracy than it saves on a model this small" in w for w in check.warnings)
    # The embedding table is 52% of MiniLM, kept in float32: under half the parameters are quantized.
    assert check.quantized_share == pytest.approx(MINILM_GROUPS["linear"][0] / 22_713_216)
    assert check.quantized_share is not None and check.quantized_share < MIN_QUANTIZED_SHARE
    assert any("the embeddings hold 52%" in w for w in check.warnings)
    assert [(kept.name, kept.parameters) for kept in check.kept_precision] == [
        ("embeddings", MINILM_GROUPS["embeddings"][0]),
        ("norm", MINILM_GROUPS["norm"][0]),
        ("other", MINILM_GROUPS["other"][0]),
    ]
    assert check.current_size_bytes == (source / "model.safetensors").stat().st_size
    linear = check.group("linear")
    assert linear is not None and linear.treatment == "quantized"
    assert linear.estimated_bytes == round(MINILM_GROUPS["linear"][0] * 4.75 / 8)  # torchao int4, group 32
    assert check.estimated_size_bytes == check.current_size_bytes - linear.stored_bytes + linear.estimated_bytes
    assert check.already_quantized is None and not check.tied_embeddings
    assert any("no task head" in note for note in check.notes)


def test_minilm_8bit_warns_only_about_the_embedding_share(minilm_model: tuple[ModelCard, Path]) -> None:
    # 8 bits is safe at this size, but the float32 embeddings still hold most of the model: a warning, not a pass.
    card, source = minilm_model
    check = check_suitability(card, source, "transformers", METHODS["torch-dynamic-int8"], 8)
    assert check.verdict == "warning"
    assert len(check.warnings) == 1 and "only 47% of the parameters would be quantized" in check.warnings[0]
    assert check.estimated_size_bytes is not None and check.current_size_bytes is not None
    assert check.estimated_size_bytes < 0.7 * check.current_size_bytes


@pytest.mark.parametrize(
    ("method", "bits", "reason"),
    [
        ("llama-quantize", 4, "llama-quantize quantizes decoder models, not encoders"),
        ("torch-dynamic-int8", 4, "torch-dynamic-int8 makes 8-bit weights, not 4-bit"),
    ],
)
def test_a_method_that_cannot_handle_the_model_is_unsuitable(
    minilm_model: tuple[ModelCard, Path], method: str, bits: int, reason: str
) -> None:
    card, source = minilm_model
    check = check_suitability(card, source, "transformers", METHODS[method], bits)
    assert check.verdict == "unsuitable"
    assert reason in check.reasons


def test_smollm2_gguf_is_already_quantized_and_refused_without_allow_requantize(
    smollm2: tuple[ModelCard, Path],
) -> None:
    card, source = smollm2
    check = check_suitability(card, source, "gguf", METHODS["llama-quantize"], 4)
    assert check.verdict == "unsuitable"
    assert check.already_quantized == "Q4_1"
    assert any("already quantized (Q4_1)" in r and "--allow-requantize" in r for r in check.reasons)
    assert check.parameters == card.parameters == 134_515_008
    assert _groups(check) == {"embeddings": (49152 * 576, 1), "norm": (61 * 576, 61), "linear": (106_168_320, 210)}
    assert check.tied_embeddings
    assert any("tied embeddings: the output head shares the embedding table" in note for note in check.notes)
    embeddings = check.group("embeddings")
    assert embeddings is not None and embeddings.dtypes == ("Q8_0",)
    # llama.cpp stores a tied table as the output head: Q8_0, as 576-wide rows are not whole 256-weight blocks.
    assert embeddings.treatment == "higher" and embeddings.precision_after.startswith("Q8_0")
    assert check.current_size_bytes == source.stat().st_size


def test_smollm2_requantizing_when_allowed_is_a_warning(smollm2: tuple[ModelCard, Path]) -> None:
    card, source = smollm2
    check = check_suitability(card, source, "gguf", METHODS["llama-quantize"], 4, allow_requantize=True)
    assert check.verdict == "warning" and check.reasons == ()
    assert any("requantizing is lossy" in w for w in check.warnings)
    assert check.quantized_share == pytest.approx(106_168_320 / 134_515_008)


def test_a_dequantized_gguf_keeps_its_embeddings_in_float32_and_grows(smollm2: tuple[ModelCard, Path]) -> None:
    card, source = smollm2
    check = check_suitability(card, source, "gguf", METHODS["torchao"], 4, allow_requantize=True)
    embeddings = check.group("embeddings")
    assert embeddings is not None and embeddings.treatment == "dequantized"
    assert embeddings.estimated_bytes == 49152 * 576 * 4
    assert check.estimated_size_bytes is not None and check.current_size_bytes is not None
    assert check.estimated_size_bytes > check.current_size_bytes
    assert any("no smaller than the source" in w for w in check.warnings)


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    sizes = {"F32": 4, "F16": 2, "I64": 8}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        length = sizes[dtype]
        for dim in shape:
            length *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + length]}
        offset += length
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(offset))


@pytest.fixture
def tiny_decoder(tmp_path: Path) -> Path:
    """A hand-written transformers folder: a two-matrix decoder with an untied head."""
    folder = tmp_path / "tiny-decoder"
    folder.mkdir()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "tie_word_embeddings": False}
    (folder / "config.json").write_text(json.dumps(config))
    _write_safetensors(
        folder / "model.safetensors",
        {
            "model.embed_tokens.weight": ("F32", [10, 8]),
            "model.layers.0.input_layernorm.weight": ("F32", [8]),
            "model.layers.0.self_attn.q_proj.weight": ("F16", [8, 8]),
            "model.layers.0.self_attn.q_proj.bias": ("F32", [8]),
            "model.layers.0.mlp.down_proj.weight": ("F16", [8, 16]),
            "model.norm.weight": ("F32", [8]),
            "model.rotary.position_ids": ("I64", [1, 4]),
            "lm_head.weight": ("F32", [10, 8]),
        },
    )
    return folder


def test_a_hand_written_safetensors_folder_is_counted_exactly(tiny_decoder: Path) -> None:
    card = Registry([]).resolve(str(tiny_decoder))
    check = check_suitability(card, tiny_decoder, "transformers", METHODS["torchao"], 8)
    assert _groups(check) == {
        "embeddings": (80, 1),
        "output_head": (80, 1),
        "norm": (16, 2),
        "linear": (64 + 128, 2),
        "other": (8, 2),
    }
    assert check.parameters == 80 + 80 + 16 + 192 + 8
    linear = check.group("linear")
    assert linear is not None and linear.stored_bytes == 192 * 2 and linear.estimated_bytes == 192
    assert check.estimated_size_bytes == check.current_size_bytes - 192  # float16 -> int8 halves the layers
    assert not check.tied_embeddings
    assert check.quantized_share == pytest.approx(192 / 376)  # just over half: no share warning
    assert check.verdict == "suitable" and check.warnings == ()  # the small-model warning is for 4 bits only


def test_a_small_decoder_at_4_bits_is_warned(tiny_decoder: Path) -> None:
    card = Registry([]).resolve(str(tiny_decoder))
    check = check_suitability(card, tiny_decoder, "transformers", METHODS["torchao"], 4)
    assert check.verdict == "warning"
    assert any("under 100M for decoders" in w for w in check.warnings)


def test_a_folder_without_linear_layers_is_unsuitable(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    _write_safetensors(tmp_path / "model.safetensors", {"embeddings.word_embeddings.weight": ("F32", [10, 4])})
    card = Registry([]).resolve(str(tmp_path))
    check = check_suitability(card, tmp_path, "transformers", METHODS["torchao"], 8)
    assert check.verdict == "unsuitable"
    assert any("holds no linear layers" in r for r in check.reasons)


def test_an_untied_f16_gguf_is_quantized_with_its_token_table(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(1)
    writer.add_token_list(["a", "b", "c"])  # a string array the reader must skip
    for name, array in {
        "token_embd.weight": np.zeros((10, 256), dtype=np.float32),
        "blk.0.attn_q.weight": np.zeros((256, 256), dtype=np.float16),
        "blk.0.attn_norm.weight": np.zeros((256,), dtype=np.float32),
        "output.weight": np.zeros((10, 256), dtype=np.float32),
    }.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    card = Registry([]).resolve(str(path))
    check = check_suitability(card, path, "gguf", METHODS["llama-quantize"], 4)
    assert check.already_quantized is None and not check.tied_embeddings
    assert _groups(check) == {"embeddings": (2560, 1), "output_head": (2560, 1), "norm": (256, 1), "linear": (65536, 1)}
    embeddings, head = check.group("embeddings"), check.group("output_head")
    assert embeddings is not None and embeddings.treatment == "quantized"  # llama.cpp quantizes an untied table
    assert head is not None and head.treatment == "higher" and head.precision_after.startswith("Q6_K")
    assert head.estimated_bytes == round(2560 * 6.5625 / 8)
    assert check.verdict == "warning"  # a tiny decoder at 4 bits


def _onnx_graph(path: Path, quantized: bool) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def tensor(name: str, dtype: int, dims: list[int]) -> Any:
        count = 1
        for dim in dims:
            count *= dim
        width = {TensorProto.FLOAT: 4, TensorProto.INT64: 8, TensorProto.UINT8: 1}[dtype]
        return helper.make_tensor(name, dtype, dims, bytes(count * width), raw=True)

    initializers = [
        tensor("embeddings.word_embeddings.weight", TensorProto.FLOAT, [10, 32]),
        tensor("embeddings.LayerNorm.weight", TensorProto.FLOAT, [32]),
        tensor("embeddings.LayerNorm.bias", TensorProto.FLOAT, [32]),
        tensor("encoder.layer.0.query.bias", TensorProto.FLOAT, [4]),
        tensor("/Constant_output_0", TensorProto.INT64, [2]),
        tensor("onnx::MatMul_2", TensorProto.FLOAT, [4, 2]),
    ]
    nodes = [
        helper.make_node("Gather", ["embeddings.word_embeddings.weight", "input_ids"], ["e"], name="/emb/Gather"),
        helper.make_node(
            "LayerNormalization",
            ["e", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"],
            ["n"],
            name="/embeddings/LayerNorm/LayerNormalization",
        ),
    ]
    if quantized:  # MatMulNBits: K=32, N=4, 4 bits in blocks of 32 -> B is uint8 [4, 1, 16]
        initializers += [tensor("onnx::B", TensorProto.UINT8, [4, 1, 16]), tensor("onnx::S", TensorProto.FLOAT, [4])]
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                ["n", "onnx::B", "onnx::S"],
                ["q"],
                name="/encoder/layer.0/query/MatMulNBits",
                domain="com.microsoft",
                K=32,
                N=4,
                bits=4,
                block_size=32,
            )
        )
    else:
        initializers.append(tensor("onnx::MatMul_1", TensorProto.FLOAT, [32, 4]))
        nodes.append(helper.make_node("MatMul", ["n", "onnx::MatMul_1"], ["q"], name="/encoder/layer.0/query/MatMul"))
    nodes += [
        helper.make_node("Add", ["q", "encoder.layer.0.query.bias"], ["a"], name="/encoder/layer.0/query/Add"),
        helper.make_node("MatMul", ["a", "onnx::MatMul_2"], ["h"], name="/qa_outputs/MatMul"),
        helper.make_node("Reshape", ["h", "/Constant_output_0"], ["logits"], name="/Reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [3, 2])],
        initializers,
    )
    path.mkdir()
    onnx.save(helper.make_model(graph), str(path / "model.onnx"))


def test_an_onnx_graph_is_classified_by_the_nodes_that_use_each_initializer(tmp_path: Path) -> None:
    folder = tmp_path / "onnx"
    _onnx_graph(folder, quantized=False)
    card = Registry([]).resolve(str(folder))
    assert card.kind == "encoder"
    check = check_suitability(card, folder, "onnx", METHODS["onnx-dynamic-int8"], 8)
    assert _groups(check) == {
        "embeddings": (320, 1),
        "output_head": (8, 1),  # onnx::MatMul_2, named by its node /qa_outputs/MatMul
        "norm": (64, 2),
        "linear": (128, 1),
        "other": (4, 2),  # the query bias, and a shape constant (no parameters)
    }
    inventory = read_inventory(folder, "onnx")
    assert {t.stored_name: t.name for t in inventory.tensors}["onnx::MatMul_2"] == "qa_outputs.weight"
    assert check.already_quantized is None
    assert check.verdict == "warning"  # a tiny encoder whose embeddings outweigh its one layer


def test_an_onnx_graph_with_matmulnbits_is_already_quantized(tmp_path: Path) -> None:
    folder = tmp_path / "onnx-int4"
    _onnx_graph(folder, quantized=True)
    card = Registry([]).resolve(str(folder))
    check = check_suitability(card, folder, "onnx", METHODS["onnx-matmulnbits"], 4)
    assert check.already_quantized == "MatMulNBits int4"
    assert check.verdict == "unsuitable"
    linear = check.group("linear")
    assert linear is not None and linear.parameters == 32 * 4  # the packed matrix counts as K x N
    assert linear.tensors == 2  # the weight and its scales


def test_an_api_model_is_unsuitable_without_reading_anything() -> None:
    card = default_registry().resolve("grok-3-mini-fast")
    check = check_suitability(card, Path("/nonexistent"), "api", METHODS["torchao"], 4)
    assert check.verdict == "unsuitable"
    assert check.reasons == ("grok-3-mini-fast is served over an API: it has no local weights to quantize",)
    assert check.groups == () and check.parameters is None
    assert json.loads(json.dumps(check.to_dict()))["verdict"] == "unsuitable"


def test_to_dict_labels_every_figure(minilm_model: tuple[ModelCard, Path]) -> None:
    card, source = minilm_model
    document = check_suitability(card, source, "transformers", METHODS["torchao"], 4).to_dict()
    assert json.loads(json.dumps(document)) == document
    figures = _figures(document)
    assert figures and all(f["label"] in ("measured", "estimated") and f["unit"] for f in figures)
    assert document["estimated_size"]["label"] == "estimated" and document["estimated_size"]["unit"] == "bytes"
    assert document["current_size"]["label"] == "measured"
    assert document["quantized_share"]["label"] == "estimated"
    assert document["groups"]["linear"]["after"]["label"] == "estimated"
    assert document["kept_precision"][0] == {
        "group": "embeddings",
        "parameters": MINILM_GROUPS["embeddings"][0],
        "precision": "F32 as stored",
    }


def test_the_table_shows_groups_and_verdict(smollm2: tuple[ModelCard, Path]) -> None:
    from rich.console import Console

    card, source = smollm2
    console = Console(record=True, width=220)
    console.print(suitability_table(check_suitability(card, source, "gguf", METHODS["llama-quantize"], 4)))
    text = console.export_text()
    assert "Suitability of smollm2-135m-instruct" in text and "already Q4_1" in text
    for expected in ("embeddings", "linear layers", "normalisation", "verdict: unsuitable", "134,515,008"):
        assert expected in text


@pytest.mark.parametrize(
    ("name", "shape", "group"),
    [
        ("model.embed_tokens.weight", (100, 8), "embeddings"),
        ("transformer.wte.weight", (100, 8), "embeddings"),
        ("token_embd.weight", (100, 8), "embeddings"),
        ("embeddings.LayerNorm.weight", (8,), "norm"),
        ("transformer.ln_f.weight", (8,), "norm"),
        ("blk.0.attn_norm.weight", (8,), "norm"),
        ("output_norm.weight", (8,), "norm"),
        ("output.weight", (100, 8), "output_head"),
        ("lm_head.weight", (100, 8), "output_head"),
        ("qa_outputs.weight", (2, 8), "output_head"),
        ("classifier.bias", (3,), "output_head"),
        ("encoder.embedding_hidden_mapping_in.weight", (32, 16), "linear"),  # ALBERT's projection, not a table
        ("encoder.layer.0.attention.output.dense.weight", (8, 8), "linear"),
        ("blk.0.ffn_down.weight", (8, 32), "linear"),
        ("encoder.layer.0.attention.output.dense.bias", (8,), "other"),
    ],
)
def test_classify_by_name(name: str, shape: tuple[int, ...], group: str) -> None:
    count = 1
    for dim in shape:
        count *= dim
    assert classify(TensorInfo(name, name, shape, "F32", count, count * 4)) == group


def test_unreadable_sources_say_so_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match="is not a readable GGUF file"):
        read_inventory(bogus, "gguf")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"holds no \*\.safetensors weights"):
        read_inventory(tmp_path, "transformers")
