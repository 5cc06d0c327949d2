"""Parity of ONNX encoder exports with PyTorch: MiniLM per head, a deliberately broken weight, tiny seed encoders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
numpy_helper = pytest.importorskip("onnx.numpy_helper")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxslim")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from slm_eval.backends.base import EncoderRequest, EncoderTask, LoadOptions  # noqa: E402
from slm_eval.backends.encoder_heads import ENCODER_TASKS  # noqa: E402
from slm_eval.backends.onnx_encoder import load_encoder as load_onnx_encoder  # noqa: E402
from slm_eval.backends.transformers_encoder import load_encoder as load_transformers_encoder  # noqa: E402
from slm_eval.errors import UserError  # noqa: E402
from slm_eval.optimize.encoder_parity import (  # noqa: E402
    QUANTIZED_TOLERANCE,
    ParityReport,
    ParityTolerance,
    check_encoder_parity,
)
from slm_eval.optimize.onnx_encoder_export import EncoderExport, export_encoder  # noqa: E402
from tests.optimize.tiny_encoders import ARCHITECTURES, build_tiny_encoder, minilm, tiny_card  # noqa: E402

QUESTION = EncoderRequest(
    "Which document was forged?",
    "The officer inspected the traveller's passport and found a forged entry stamp on page six.",
)


@pytest.fixture(scope="module", params=ENCODER_TASKS)
def minilm_export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EncoderExport:
    """The bundled MiniLM exported once per task head."""
    card, source = minilm()
    task: EncoderTask = request.param
    return export_encoder(card, source, tmp_path_factory.mktemp(f"minilm-{task}"), task)


@pytest.fixture(scope="module")
def minilm_parity(minilm_export: EncoderExport) -> ParityReport:
    """The parity check of each MiniLM export with its PyTorch model."""
    card, source = minilm()
    return check_encoder_parity(card, source, minilm_export.output_dir, threads=2)


@pytest.mark.slow
def test_minilm_export_matches_pytorch(minilm_parity: ParityReport, minilm_export: EncoderExport) -> None:
    assert minilm_parity.passed, minilm_parity.failures
    assert minilm_parity.task == minilm_export.task
    assert minilm_parity.max_abs_diff <= 1e-4
    assert minilm_parity.min_cosine >= 0.99999
    assert minilm_parity.agreement == 1.0
    assert minilm_parity.tokenizers_agree
    assert [case.name for case in minilm_parity.cases] == ["request 1", "request 2", "request 3", "padded batch of 2"]
    long_case, batch_case = minilm_parity.cases[2], minilm_parity.cases[3]
    assert long_case.tokens == 128
    assert batch_case.batch == 2
    assert batch_case.onnx_predictions == (
        minilm_parity.cases[0].onnx_predictions[0],
        minilm_parity.cases[1].onnx_predictions[0],
    )
    document = json.loads(json.dumps(minilm_parity.to_dict()))
    assert document["passed"] is True
    assert document["tolerance"] == {"max_abs_diff": 1e-3, "min_cosine": 0.9999, "min_agreement": 1.0}
    assert len(document["cases"]) == 4


@pytest.mark.slow
@pytest.mark.parametrize("minilm_export", ["qa"], indirect=True)
def test_a_scaled_weight_fails_the_check(minilm_export: EncoderExport, tmp_path: Path) -> None:
    card, source = minilm()
    broken = Path(shutil.copytree(minilm_export.output_dir, tmp_path / "broken"))
    model = onnx.load(str(broken / "model.onnx"))
    largest = max(
        (tensor for tensor in model.graph.initializer if len(tensor.dims) == 2),
        key=lambda tensor: tensor.dims[0] * tensor.dims[1],
    )
    largest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(largest) * 1.5, largest.name))
    onnx.save(model, str(broken / "model.onnx"))
    report = check_encoder_parity(card, source, broken, threads=2)
    assert not report.passed
    assert report.max_abs_diff > 1e-2
    assert any(failure.startswith("max abs difference") for failure in report.failures)
    assert report.to_dict()["passed"] is False


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_seed_architecture_through_every_path(architecture: str, tmp_path: Path) -> None:
    """Transformers backend (qa head), export, ONNX backend and parity, on a tiny model of each seed encoder."""
    source = build_tiny_encoder(tmp_path / "source", architecture)
    card = tiny_card(source)
    options = LoadOptions(threads=1, encoder_task="qa")
    pytorch = load_transformers_encoder(card, source, options)
    expected = pytorch.predict([QUESTION])
    assert pytorch.head_trained is False
    export = export_encoder(card, source, tmp_path / "onnx", "qa")
    onnx_backend = load_onnx_encoder(card, export.output_dir, options)
    got = onnx_backend.predict([QUESTION])
    assert [p.text for p in got] == [p.text for p in expected]
    assert got[0].detail == expected[0].detail
    assert got[0].confidence == pytest.approx(expected[0].confidence, abs=1e-5)
    assert onnx_backend.parameter_count == pytorch.parameter_count
    report = check_encoder_parity(card, source, export.output_dir, threads=1)
    assert report.passed, report.failures
    assert report.max_abs_diff <= 1e-5
    assert report.cases[2].tokens == 128


def test_custom_inputs_tolerances_and_errors(tmp_path: Path) -> None:
    source = build_tiny_encoder(tmp_path / "source", "albert-base-v2")
    card = tiny_card(source)
    export_encoder(card, source, tmp_path / "onnx", "qa", simplify=False)
    report = check_encoder_parity(card, source, tmp_path / "onnx", texts=[QUESTION], threads=1)
    assert report.passed
    assert [case.name for case in report.cases] == ["request 1"]
    impossible = ParityTolerance(max_abs_diff=-1.0, min_cosine=2.0, min_agreement=1.5)
    strict = check_encoder_parity(card, source, tmp_path / "onnx", texts=[QUESTION], tolerance=impossible)
    assert not strict.passed
    assert [failure.split()[0] for failure in strict.failures] == ["max", "cosine", "1"]
    assert strict.tolerance == impossible
    assert QUANTIZED_TOLERANCE.max_abs_diff > report.tolerance.max_abs_diff
    with pytest.raises(UserError, match="at least one input"):
        check_encoder_parity(card, source, tmp_path / "onnx", texts=[], threads=1)
    with pytest.raises(UserError, match="needs a context"):
        check_encoder_parity(card, source, tmp_path / "onnx", texts=[EncoderRequest("where?")], threads=1)
    with pytest.raises(UserError, match=r"head\.json is missing"):
        check_encoder_parity(card, source, tmp_path, threads=1)
