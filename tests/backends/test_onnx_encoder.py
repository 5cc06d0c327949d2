"""The ONNX encoder backend on exports of the real bundled MiniLM and of a tiny DistilBERT."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from slm_eval.backends import onnx as dispatcher
from slm_eval.backends.base import EncoderRequest, EncoderTask, LoadOptions
from slm_eval.backends.encoder_heads import ENCODER_TASKS, default_labels
from slm_eval.backends.onnx_encoder import OnnxEncoderBackend, choose_providers, load_encoder
from slm_eval.backends.transformers_encoder import load_encoder as load_transformers_encoder
from slm_eval.errors import MissingDependencyError, UserError
from slm_eval.models.registry import ModelCard
from slm_eval.optimize.onnx_encoder_export import EncoderExport, export_encoder
from tests.optimize.tiny_encoders import build_tiny_encoder, minilm, tiny_card

REQUESTS: dict[EncoderTask, list[EncoderRequest]] = {
    "qa": [
        EncoderRequest("Which document was forged?", "The officer found a forged entry stamp in the passport."),
        EncoderRequest("Where was the van stopped?", "The van was stopped at the northern checkpoint at night."),
    ],
    "ner": [
        EncoderRequest("Maria Gonzalez arrived from Madrid on flight IB3166 with passport X1234567."),
        EncoderRequest("The lorry AB-123-CD carried 4000 cigarettes."),
    ],
    "classify": [
        EncoderRequest("Two undeclared cartons of cigarettes were hidden in the spare wheel."),
        EncoderRequest("Tourist visit with a return ticket."),
    ],
}


class StepClock:
    """A clock that moves forward 0.25 s at each reading."""

    def __init__(self) -> None:
        self.readings = 0

    def now(self) -> float:
        self.readings += 1
        return self.readings * 0.25


@pytest.fixture(scope="module", params=ENCODER_TASKS)
def minilm_export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EncoderExport:
    """The bundled MiniLM exported once per task head."""
    card, source = minilm()
    task: EncoderTask = request.param
    return export_encoder(card, source, tmp_path_factory.mktemp(f"minilm-{task}"), task)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelCard, Path]:
    """A tiny DistilBERT exported with a ``ner`` head: the folder to copy and break."""
    source = build_tiny_encoder(tmp_path_factory.mktemp("distilbert"), "distilbert-base-uncased")
    card = tiny_card(source)
    export = export_encoder(card, source, tmp_path_factory.mktemp("distilbert-onnx"), "ner", simplify=False)
    return card, export.output_dir


def _options(task: EncoderTask = "ner", **changes: object) -> LoadOptions:
    return LoadOptions(**{"threads": 1, "encoder_task": task, **changes})  # type: ignore[arg-type]


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


@pytest.mark.slow
def test_minilm_onnx_answers_like_pytorch(minilm_export: EncoderExport) -> None:
    card, source = minilm()
    task = minilm_export.task
    onnx_backend = dispatcher.load(card, minilm_export.output_dir, _options(task))
    torch_backend = load_transformers_encoder(card, source, _options(task))
    assert isinstance(onnx_backend, OnnxEncoderBackend)
    try:
        got = onnx_backend.predict(REQUESTS[task])
        expected = torch_backend.predict(REQUESTS[task])
    finally:
        onnx_backend.close()
        torch_backend.close()
    assert [p.text for p in got] == [p.text for p in expected]
    assert [p.input_tokens for p in got] == [p.input_tokens for p in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.confidence == pytest.approx(theirs.confidence, abs=1e-5)
        if task == "classify":
            assert dict(mine.detail["scores"]) == pytest.approx(dict(theirs.detail["scores"]), abs=1e-5)
        else:
            assert mine.detail == theirs.detail
    assert onnx_backend.parameter_count == torch_backend.parameter_count == minilm_export.parameters


@pytest.mark.slow
def test_minilm_backend_declares_its_head(minilm_export: EncoderExport) -> None:
    card, _ = minilm()
    task = minilm_export.task
    clock = StepClock()
    backend = load_encoder(card, minilm_export.output_dir, _options(task, clock=clock, threads=2))
    assert backend.name == "onnx"
    assert backend.task == task
    assert backend.capabilities.encoder_tasks == frozenset({task})
    assert not backend.capabilities.generate
    assert backend.head_trained is False
    assert backend.labels == default_labels(task)
    assert backend.provider == "CPUExecutionProvider"
    (prediction,) = backend.predict(REQUESTS[task][:1])
    assert (prediction.started_at, prediction.finished_at) == (0.25, 0.5)
    assert prediction.end_to_end_s == 0.25
    assert backend._session is not None
    assert backend._session.get_session_options().intra_op_num_threads == 2
    assert backend._session.get_session_options().inter_op_num_threads == 1
    backend.close()
    with pytest.raises(UserError, match="closed"):
        backend.predict(REQUESTS[task])


def test_requests_are_checked(tiny: tuple[ModelCard, Path]) -> None:
    card, folder = tiny
    backend = load_encoder(card, folder, _options())
    with pytest.raises(UserError, match="empty input"):
        backend.predict([EncoderRequest("  ")])
    (prediction,) = backend.predict([EncoderRequest("the van was stopped at the northern checkpoint")])
    assert json.loads(prediction.text).keys() == {"entities"}
    assert prediction.input_tokens == 10


def test_context_length_cuts_inputs(tiny: tuple[ModelCard, Path]) -> None:
    card, folder = tiny
    backend = load_encoder(card, folder, _options(context_length=6))
    (prediction,) = backend.predict([EncoderRequest("the van was stopped at the northern checkpoint")])
    assert prediction.input_tokens == 6


def test_task_mismatch_names_the_head_and_the_fix(tiny: tuple[ModelCard, Path]) -> None:
    card, folder = tiny
    with pytest.raises(UserError, match=r"holds a ner head, not qa: run it with --task ner.*--task qa\)$"):
        load_encoder(card, folder, _options("qa"))


def test_corrupt_model_is_one_line_error(tiny: tuple[ModelCard, Path], tmp_path: Path) -> None:
    card, folder = tiny
    copy = _copy(folder, tmp_path)
    data = (copy / "model.onnx").read_bytes()
    (copy / "model.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="truncated or corrupt") as raised:
        load_encoder(card, copy, _options())
    assert "\n" not in str(raised.value)
    (copy / "model.onnx").unlink()
    with pytest.raises(UserError, match=r"model\.onnx is missing"):
        load_encoder(card, copy, _options())


def test_missing_tokenizer_is_user_error(tiny: tuple[ModelCard, Path], tmp_path: Path) -> None:
    card, folder = tiny
    copy = _copy(folder, tmp_path)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(UserError, match=r"has no tokenizer\.json"):
        load_encoder(card, copy, _options())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda head: "{not json", "not readable JSON"),
        (lambda head: json.dumps([1, 2]), "expected a JSON object"),
        (lambda head: json.dumps({**head, "task": "summarise"}), "task 'summarise'"),
        (lambda head: json.dumps({k: v for k, v in head.items() if k != "inputs"}), "'inputs'"),
        (lambda head: json.dumps({**head, "outputs": ["start_logits"]}), "returns logits, not start_logits"),
        (lambda head: json.dumps({**head, "labels": []}), "needs its labels"),
        (lambda head: json.dumps({**head, "trained": "no"}), "trained must be"),
        (lambda head: json.dumps({**head, "max_length": 0}), "max_length"),
        (lambda head: json.dumps({**head, "inputs": ["input_ids", "pixels"]}), "inputs must include"),
        (lambda head: json.dumps({**head, "inputs": ["input_ids"]}), "does not match"),
        (lambda head: json.dumps({**head, "labels": ["O", "B-X"]}), "names 2 labels but .* returns 15 logits"),
    ],
)
def test_bad_head_json_is_one_line_error(
    tiny: tuple[ModelCard, Path], tmp_path: Path, change: object, message: str
) -> None:
    card, folder = tiny
    copy = _copy(folder, tmp_path)
    head = json.loads((copy / "head.json").read_text())
    (copy / "head.json").write_text(change(head))  # type: ignore[operator]
    with pytest.raises(UserError, match=message) as raised:
        load_encoder(card, copy, _options())
    assert "\n" not in str(raised.value)


def test_missing_head_json(tiny: tuple[ModelCard, Path], tmp_path: Path) -> None:
    card, folder = tiny
    copy = _copy(folder, tmp_path)
    (copy / "head.json").unlink()
    with pytest.raises(UserError, match=r"head\.json is missing"):
        load_encoder(card, copy, _options())
    with pytest.raises(UserError, match="not a runnable ONNX model"):
        dispatcher.load(card, copy, _options())


def test_missing_onnxruntime_names_the_extra(tiny: tuple[ModelCard, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    card, folder = tiny
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"slm-eval\[onnx\]"):
        load_encoder(card, folder, _options())


def test_missing_transformers_is_named(tiny: tuple[ModelCard, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    card, folder = tiny
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match="'transformers'"):
        load_encoder(card, folder, _options())


def test_providers_are_chosen_best_first() -> None:
    both = ["CUDAExecutionProvider", "AzureExecutionProvider", "CPUExecutionProvider"]
    cpu_only = ["AzureExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, both) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, cpu_only) == ["CPUExecutionProvider"]
    assert choose_providers("cpu", both) == ["CPUExecutionProvider"]
    assert choose_providers("CUDA", both) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("CUDAExecutionProvider", both)[0] == "CUDAExecutionProvider"
    with pytest.raises(UserError, match=r"the cuda provider is not available.*--provider cpu"):
        choose_providers("cuda", cpu_only)
    with pytest.raises(UserError, match="unknown ONNX Runtime provider 'tpu'"):
        choose_providers("tpu", both)


def test_cpu_provider_is_honoured(tiny: tuple[ModelCard, Path]) -> None:
    card, folder = tiny
    backend = load_encoder(card, folder, _options(provider="cpu"))
    assert backend.provider == "CPUExecutionProvider"


def test_cuda_without_cuda_is_user_error(tiny: tuple[ModelCard, Path]) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    card, folder = tiny
    with pytest.raises(UserError, match="cuda provider is not available"):
        load_encoder(card, folder, _options(provider="cuda"))
