"""ONNX export of encoders with a task head: the real bundled MiniLM per head, and the tiny seed architectures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxslim")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from slm_eval.backends.base import EncoderTask  # noqa: E402
from slm_eval.backends.encoder_heads import ENCODER_TASKS, HEAD_OUTPUTS, default_labels  # noqa: E402
from slm_eval.errors import MissingDependencyError, UserError  # noqa: E402
from slm_eval.optimize.export_facts import op_counts  # noqa: E402
from slm_eval.optimize.onnx_encoder_export import TOOLS, EncoderExport, export_encoder  # noqa: E402
from tests.optimize.tiny_encoders import ARCHITECTURES, build_tiny_encoder, minilm, tiny_card  # noqa: E402

BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module", params=ENCODER_TASKS)
def minilm_export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EncoderExport:
    """The bundled MiniLM exported once per task head."""
    card, source = minilm()
    task: EncoderTask = request.param
    return export_encoder(card, source, tmp_path_factory.mktemp(f"minilm-{task}"), task)


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DistilBERT (no token_type_ids input)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("distilbert"), "distilbert-base-uncased")


@pytest.mark.slow
def test_minilm_export_writes_model_tokenizer_config_and_head(minilm_export: EncoderExport) -> None:
    folder = minilm_export.output_dir
    task = minilm_export.task
    assert {"model.onnx", "head.json", "config.json", "tokenizer.json", "tokenizer_config.json"} <= set(
        minilm_export.files
    )
    assert minilm_export.files == {name: (folder / name).stat().st_size for name in minilm_export.files}
    assert minilm_export.files["model.onnx"] > 80_000_000  # 22.7 M float32 parameters
    head = json.loads((folder / "head.json").read_text())
    assert head == {
        "task": task,
        "labels": list(default_labels(task)),
        "trained": False,
        "inputs": list(BERT_INPUTS),
        "outputs": list(HEAD_OUTPUTS[task]),
        "max_length": 512,
        "source": {"model": "all-minilm-l6-v2", "path": head["source"]["path"], "seed": 0},
        "parameters": minilm_export.parameters,
    }
    assert 22_000_000 < minilm_export.parameters < 23_000_000
    assert minilm_export.head_trained is False
    assert minilm_export.labels == default_labels(task)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"


@pytest.mark.slow
def test_minilm_graph_has_dynamic_batch_and_sequence_axes(minilm_export: EncoderExport) -> None:
    model = onnx.load(str(minilm_export.output_dir / "model.onnx"))
    assert [node.name for node in model.graph.input] == list(BERT_INPUTS)
    assert [node.name for node in model.graph.output] == list(HEAD_OUTPUTS[minilm_export.task])
    for node in model.graph.input:
        dims = [dim.dim_param for dim in node.type.tensor_type.shape.dim]
        assert dims == ["batch", "sequence"]
        assert node.type.tensor_type.elem_type == onnx.TensorProto.INT64
    first = model.graph.output[0].type.tensor_type.shape.dim
    assert first[0].dim_param == "batch"
    assert minilm_export.opset == 17
    assert minilm_export.inputs == BERT_INPUTS
    assert minilm_export.outputs == HEAD_OUTPUTS[minilm_export.task]


@pytest.mark.slow
def test_minilm_simplification_folds_constants(minilm_export: EncoderExport) -> None:
    saved = onnx.load(str(minilm_export.output_dir / "model.onnx"))
    assert minilm_export.simplified
    assert op_counts(saved.graph) == dict(minilm_export.ops_after)
    assert minilm_export.nodes_after < minilm_export.nodes_before * 0.7
    assert minilm_export.ops_before["Constant"] > 100
    assert "Constant" not in minilm_export.ops_after
    assert minilm_export.ops_after["MatMul"] == minilm_export.ops_before["MatMul"]
    assert minilm_export.ops_after["Softmax"] == 6  # one attention per layer


@pytest.mark.slow
def test_minilm_export_summary_is_json(minilm_export: EncoderExport) -> None:
    document = json.loads(json.dumps(minilm_export.to_dict()))
    assert document["nodes_before"] == minilm_export.nodes_before
    assert document["elapsed_s"]["label"] == "measured"
    assert set(document["versions"]) == set(TOOLS)
    assert all(version != "absent" for version in document["versions"].values())
    assert "TorchScript" in document["exporter"]
    assert minilm_export.total_bytes == sum(minilm_export.files.values())


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_seed_architectures_export_their_own_inputs(architecture: str, tmp_path: Path) -> None:
    source = build_tiny_encoder(tmp_path / "source", architecture)
    export = export_encoder(tiny_card(source), source, tmp_path / "onnx", "classify")
    expected = BERT_INPUTS[:2] if architecture.startswith("distilbert") else BERT_INPUTS
    assert export.inputs == expected
    assert export.outputs == ("logits",)
    assert export.nodes_after < export.nodes_before
    assert json.loads((tmp_path / "onnx" / "head.json").read_text())["inputs"] == list(expected)


def test_export_without_simplification_keeps_the_graph(tiny_source: Path, tmp_path: Path) -> None:
    export = export_encoder(tiny_card(tiny_source), tiny_source, tmp_path, "qa", simplify=False, opset=18, seed=5)
    assert not export.simplified
    assert export.ops_after == export.ops_before
    assert export.opset == 18
    assert json.loads((tmp_path / "head.json").read_text())["source"]["seed"] == 5


def test_missing_onnxslim_names_the_package(tiny_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    with pytest.raises(MissingDependencyError, match="'onnxslim'"):
        export_encoder(tiny_card(tiny_source), tiny_source, tmp_path, "qa")
    assert not any(tmp_path.iterdir())


def test_source_without_weights_is_user_error(tiny_source: Path, tmp_path: Path) -> None:
    source = tmp_path / "no-weights"
    source.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (source / name).write_bytes((tiny_source / name).read_bytes())
    with pytest.raises(UserError, match="weights are missing"):
        export_encoder(tiny_card(source), source, tmp_path / "onnx", "qa")


def test_source_without_tokenizer_is_user_error(tiny_source: Path, tmp_path: Path) -> None:
    source = tmp_path / "no-tokenizer"
    source.mkdir()
    for name in ("config.json", "model.safetensors"):
        (source / name).write_bytes((tiny_source / name).read_bytes())
    with pytest.raises(UserError, match="has no tokenizer vocabulary"):
        export_encoder(tiny_card(source), source, tmp_path / "onnx", "qa")
