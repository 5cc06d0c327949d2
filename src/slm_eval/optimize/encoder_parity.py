"""Prove that an ONNX encoder export answers like the PyTorch model it came from.

On fixed border-control inputs, the ONNX graph in a folder written by
:func:`~slm_eval.optimize.onnx_encoder_export.export_encoder` and the PyTorch model (same weights, the
same seed for an untrained head) are run on identical token ids. The raw head outputs are compared (largest
absolute difference, cosine similarity over the real, unpadded tokens) and so are the decoded predictions
(the same span, entities or label through :func:`~slm_eval.backends.encoder_heads.to_prediction`). The
cases include one input of exactly ``max_length`` tokens and a padded batch of two, which proves the
graph's dynamic batch and sequence axes and its attention mask.

Example::

    report = check_encoder_parity(card, source, Path("data/models/all-minilm-l6-v2/onnx-qa"))
    assert report.passed, report.failures
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slm_eval.backends.base import EncoderPrediction, EncoderRequest, EncoderTask
from slm_eval.backends.encoder_heads import EncodedInput, encode, to_prediction
from slm_eval.backends.onnx_encoder import MODEL_FILE, load_tokenizer, open_session, read_head_spec
from slm_eval.errors import MissingDependencyError, UserError, extra_install_hint
from slm_eval.models.registry import ModelCard

LONG_CONTEXT = (
    "At the northern land crossing the officer stopped a white delivery van at twenty past eleven. "
    "The driver presented a passport issued in Vilnius and a customs declaration listing spare parts for "
    "agricultural machinery. A scan of the cargo showed dense packages behind the rear panel, where the "
    "officers later found four thousand undeclared cigarettes and an envelope of cash. The passenger said "
    "he was travelling to visit relatives and carried a return ticket dated for the following week. "
) * 3
# Fixed inputs per task: two short ones of different lengths (also run as a padded batch) and a long one
# cut at max_length.
DEFAULT_REQUESTS: dict[EncoderTask, tuple[EncoderRequest, ...]] = {
    "qa": (
        EncoderRequest(
            "Which document was forged?",
            "The officer inspected the traveller's passport and found a forged entry stamp on page six.",
        ),
        EncoderRequest("Where was the van stopped?", "The van was stopped at the northern checkpoint."),
        EncoderRequest("What was hidden behind the rear panel?", LONG_CONTEXT),
    ),
    "ner": (
        EncoderRequest("Maria Gonzalez, holder of passport X1234567, arrived from Madrid on flight IB3166."),
        EncoderRequest("The lorry AB-123-CD carried cigarettes."),
        EncoderRequest(LONG_CONTEXT),
    ),
    "classify": (
        EncoderRequest("The passenger declared 5000 euros in cash and two cartons of cigarettes."),
        EncoderRequest("Tourist visit with a return ticket."),
        EncoderRequest(LONG_CONTEXT),
    ),
}


@dataclass(frozen=True)
class ParityTolerance:
    """How close the ONNX outputs must be to PyTorch's.

    Attributes:
        max_abs_diff: the largest allowed absolute difference of any output value.
        min_cosine: the smallest allowed cosine similarity of a case's outputs.
        min_agreement: the share of predictions that must be identical (1.0: all of them).
    """

    max_abs_diff: float = 1e-3
    min_cosine: float = 0.9999
    min_agreement: float = 1.0


FP32_TOLERANCE = ParityTolerance()
# For an 8-bit variant: outputs drift, and a near tie may flip a prediction.
QUANTIZED_TOLERANCE = ParityTolerance(max_abs_diff=0.5, min_cosine=0.99, min_agreement=0.6)


@dataclass(frozen=True)
class ParityCase:
    """One comparison: a request alone, or a padded batch.

    Attributes:
        name: what the case holds, e.g. ``request 2`` or ``padded batch of 2``.
        batch: rows run together.
        tokens: the longest row's length in tokens (the padded length of a batch).
        max_abs_diff: the largest absolute difference of the head outputs over real tokens.
        cosine: the cosine similarity of all head outputs over real tokens.
        predictions_agree: the decoded predictions of every row are identical.
        torch_predictions: what PyTorch's outputs decode to, one per row.
        onnx_predictions: what the ONNX outputs decode to, one per row.
    """

    name: str
    batch: int
    tokens: int
    max_abs_diff: float
    cosine: float
    predictions_agree: bool
    torch_predictions: tuple[str, ...]
    onnx_predictions: tuple[str, ...]


@dataclass(frozen=True)
class ParityReport:
    """The outcome of :func:`check_encoder_parity`.

    Attributes:
        task: the head compared.
        onnx_dir: the ONNX folder checked.
        cases: every comparison made.
        max_abs_diff: the largest absolute difference over all cases.
        min_cosine: the smallest cosine similarity over all cases.
        agreement: the share of rows whose predictions are identical.
        tokenizers_agree: the folder's tokenizer gives the same ids as the source's.
        tolerance: the limits applied.
        failures: why the check failed, one line each (empty when it passed).
    """

    task: EncoderTask
    onnx_dir: Path
    cases: tuple[ParityCase, ...]
    max_abs_diff: float
    min_cosine: float
    agreement: float
    tokenizers_agree: bool
    tolerance: ParityTolerance
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when every figure is within the tolerance."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for a manifest or a report); every figure is measured."""
        document = asdict(self)
        document["onnx_dir"] = str(self.onnx_dir)
        document["passed"] = self.passed
        document["cases"] = [asdict(case) for case in self.cases]
        document["label"] = "measured"
        return document


def check_encoder_parity(
    card: ModelCard,
    source: Path,
    onnx_dir: Path,
    *,
    seed: int = 0,
    texts: Sequence[EncoderRequest] | None = None,
    tolerance: ParityTolerance = FP32_TOLERANCE,
    max_length: int = 128,
    threads: int | None = None,
) -> ParityReport:
    """Compare the ONNX encoder in ``onnx_dir`` with ``card``'s PyTorch model at ``source``.

    Args:
        card: the model exported.
        source: the transformers folder the export came from.
        onnx_dir: the export (``model.onnx``, ``head.json``, tokenizer).
        seed: the seed the export's untrained head was initialised from.
        texts: the inputs (``qa`` requests need a context); the first two also run as a padded batch.
            ``None`` uses fixed border-control inputs, one of them ``max_length`` tokens long.
        tolerance: the limits; pass :data:`QUANTIZED_TOLERANCE` or your own for a quantized variant.
        max_length: inputs are cut to this many tokens.
        threads: ONNX Runtime intra-op threads (``None``: one per usable CPU).

    Raises:
        MissingDependencyError: torch, transformers or onnxruntime is not installed.
        UserError: the folder is not a readable export, or a request does not suit the task.
    """
    spec = read_head_spec(onnx_dir)
    task = spec.task
    requests = tuple(texts) if texts is not None else DEFAULT_REQUESTS[task]
    if not requests:
        raise UserError("the parity check needs at least one input")
    session = open_session(onnx_dir / MODEL_FILE, threads, "cpu")
    tokenizer = load_tokenizer(onnx_dir)
    try:
        torch = importlib.import_module("torch")
    except ImportError as exc:
        raise MissingDependencyError("torch", "the parity check", extra_install_hint("torch")) from exc
    from slm_eval.backends.transformers_encoder import load_head_model

    head = load_head_model(card, source, task, seed=seed)
    model = head.model.to("cpu").eval()
    length = min(max_length, spec.max_length)
    encoded = [encode(tokenizer, task, request, length) for request in requests]
    reference = [encode(head.tokenizer, task, request, length) for request in requests]
    tokenizers_agree = [item.input_ids for item in encoded] == [item.input_ids for item in reference]
    labels = spec.labels

    def run_torch(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            output = model(**{name: torch.from_numpy(value) for name, value in arrays.items()})
        return {name: getattr(output, name).float().numpy() for name in spec.outputs}

    def run_onnx(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = session.run(list(spec.outputs), arrays)
        return {name: np.asarray(value) for name, value in zip(spec.outputs, values, strict=True)}

    groups = [(f"request {index + 1}", [index]) for index in range(len(requests))]
    if len(requests) >= 2:
        groups.append(("padded batch of 2", [0, 1]))
    cases = []
    for name, rows in groups:
        arrays = _batch([encoded[row] for row in rows], spec.inputs, int(tokenizer.pad_token_id or 0))
        expected, actual = run_torch(arrays), run_onnx(arrays)
        cases.append(
            _compare(
                name, task, [encoded[row] for row in rows], [requests[row] for row in rows], labels, expected, actual
            )
        )
    return _report(task, onnx_dir, cases, tokenizers_agree, tolerance)


def _batch(items: Sequence[EncodedInput], names: Sequence[str], pad_id: int) -> dict[str, np.ndarray]:
    """The inputs of ``items`` as one batch, padded on the right to the longest."""
    width = max(len(item.input_ids) for item in items)
    pads = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0}
    arrays = {}
    for name in names:
        rows = [list(item.arrays([name])[name][0]) for item in items]
        arrays[name] = np.asarray([row + [pads[name]] * (width - len(row)) for row in rows], dtype=np.int64)
    return arrays


def _real_tokens(task: EncoderTask, outputs: dict[str, np.ndarray], row: int, tokens: int) -> np.ndarray:
    """Row ``row``'s outputs over its real tokens, flattened (a classification head has no token axis)."""
    if task == "classify":
        return np.asarray(outputs["logits"][row], dtype=np.float64).reshape(-1)
    return np.concatenate([np.asarray(value[row][:tokens], dtype=np.float64).reshape(-1) for value in outputs.values()])


def _compare(
    name: str,
    task: EncoderTask,
    items: Sequence[EncodedInput],
    requests: Sequence[EncoderRequest],
    labels: Sequence[str],
    expected: dict[str, np.ndarray],
    actual: dict[str, np.ndarray],
) -> ParityCase:
    torch_values, onnx_values = [], []
    torch_texts, onnx_texts = [], []
    for row, (item, request) in enumerate(zip(items, requests, strict=True)):
        tokens = len(item.input_ids)
        torch_values.append(_real_tokens(task, expected, row, tokens))
        onnx_values.append(_real_tokens(task, actual, row, tokens))
        torch_texts.append(_decode(task, expected, row, item, request, labels).text)
        onnx_texts.append(_decode(task, actual, row, item, request, labels).text)
    left, right = np.concatenate(torch_values), np.concatenate(onnx_values)
    finite = bool(np.isfinite(left).all() and np.isfinite(right).all())
    difference = float(np.abs(left - right).max()) if finite else float("inf")
    return ParityCase(
        name=name,
        batch=len(items),
        tokens=max(len(item.input_ids) for item in items),
        max_abs_diff=difference,
        cosine=_cosine(left, right) if finite else 0.0,
        predictions_agree=torch_texts == onnx_texts,
        torch_predictions=tuple(torch_texts),
        onnx_predictions=tuple(onnx_texts),
    )


def _decode(
    task: EncoderTask,
    outputs: dict[str, np.ndarray],
    row: int,
    item: EncodedInput,
    request: EncoderRequest,
    labels: Sequence[str],
) -> EncoderPrediction:
    return to_prediction(
        task, {key: value[row : row + 1] for key, value in outputs.items()}, item, request, labels, 0.0, 0.0
    )


def _cosine(left: np.ndarray, right: np.ndarray) -> float:
    norms = float(np.linalg.norm(left) * np.linalg.norm(right))
    if norms == 0.0:
        return 1.0 if not left.any() and not right.any() else 0.0
    return float(np.dot(left, right) / norms)


def _report(
    task: EncoderTask,
    onnx_dir: Path,
    cases: Sequence[ParityCase],
    tokenizers_agree: bool,
    tolerance: ParityTolerance,
) -> ParityReport:
    max_abs = max(case.max_abs_diff for case in cases)
    min_cosine = min(case.cosine for case in cases)
    rows = sum(case.batch for case in cases)
    agreeing = sum(case.batch for case in cases if case.predictions_agree)
    agreement = agreeing / rows
    failures = []
    if not tokenizers_agree:
        failures.append(f"the tokenizer in {onnx_dir} gives other token ids than the source model's")
    if not max_abs <= tolerance.max_abs_diff:
        failures.append(f"max abs difference {max_abs:.3g} is above {tolerance.max_abs_diff:g}")
    if not min_cosine >= tolerance.min_cosine:
        failures.append(f"cosine similarity {min_cosine:.6f} is below {tolerance.min_cosine:g}")
    if agreement < tolerance.min_agreement:
        failures.append(f"{agreeing} of {rows} predictions agree, fewer than {tolerance.min_agreement:.0%}")
    return ParityReport(
        task=task,
        onnx_dir=onnx_dir,
        cases=tuple(cases),
        max_abs_diff=max_abs,
        min_cosine=min_cosine,
        agreement=agreement,
        tokenizers_agree=tokenizers_agree,
        tolerance=tolerance,
        failures=tuple(failures),
    )
