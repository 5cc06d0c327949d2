"""How far a quantized ONNX encoder's sentence embeddings move from its float32 export's.

The encoder folders written by ``convert`` and ``quantize`` hold a head graph: it returns the head's logits,
not the encoder's hidden states. The sentence embedding is measured inside that same graph: the tensor the
head reads, the encoder's last hidden state, is added as an extra output of an in-memory copy of each
``model.onnx`` (the files are not changed), both graphs run on the same token ids, and the hidden states are
mean-pooled over the real tokens (the attention mask), as sentence-transformers pools all-MiniLM-L6-v2.
The figure is the cosine similarity of the two pooled vectors, the smallest over the texts.

The last hidden state is found in the float32 graph: the input of the head's final projection (a constant-
weight ``MatMul`` or ``Gemm``) when it acts on every token (``qa`` and ``ner`` heads), otherwise the output
of the last ``LayerNormalization`` (a ``classify`` head pools the first token after it). Quantization keeps
tensor names, so the same name is read from the quantized graph.

Example::

    cosine = embedding_cosine(Path("exports/minilm-qa"), Path("exports/minilm-qa-int8"), DEFAULT_TEXTS)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slm_eval.backends.onnx_encoder import MODEL_FILE, load_tokenizer, read_head_spec
from slm_eval.errors import UserError, extra_install_hint, first_line, require_module

# Fixed border-control sentences: short and long, names, numbers and codes.
DEFAULT_TEXTS: tuple[str, ...] = (
    "The officer found a forged entry stamp on page six of the traveller's passport.",
    "Two cartons of undeclared cigarettes were hidden in the spare wheel.",
    "Where was the white delivery van stopped?",
    "Maria Gonzalez, holder of passport X1234567, arrived from Madrid on flight IB3166.",
    "The lorry AB-123-CD carried spare parts for agricultural machinery.",
    "Tourist visit with a return ticket.",
    "At the northern land crossing the officer stopped a white delivery van at twenty past eleven. The driver "
    "presented a passport issued in Vilnius and a customs declaration listing spare parts for agricultural "
    "machinery, but a scan of the cargo showed dense packages behind the rear panel.",
)
WEIGHT_OPS = ("MatMul", "Gemm")
TOKEN_HEADS = ("qa", "ner")


def hidden_state_name(graph: Any, task: str) -> str:
    """The name of the encoder's last hidden state in an encoder head graph (``onnx.GraphProto``).

    Raises:
        UserError: the graph has neither a constant-weight head projection over the tokens nor a
            ``LayerNormalization`` to read the hidden state from.
    """
    constants = {tensor.name for tensor in graph.initializer}
    if task in TOKEN_HEADS:
        projections = [node for node in graph.node if node.op_type in WEIGHT_OPS and node.input[1] in constants]
        if projections:
            return str(projections[-1].input[0])
    norms = [node for node in graph.node if node.op_type == "LayerNormalization"]
    if norms:
        return str(norms[-1].output[0])
    raise UserError(
        f"cannot find the encoder's last hidden state in this {task} head graph (no head projection over the "
        "tokens, no LayerNormalization); its sentence embeddings cannot be compared"
    )


def sentence_embeddings(folder: Path, texts: Sequence[str], hidden_state: str | None = None) -> np.ndarray:
    """Mean-pooled last hidden states of ``texts`` (one row each) from the encoder head graph in ``folder``.

    Args:
        folder: an ONNX encoder folder (``model.onnx``, ``head.json``, tokenizer).
        texts: the sentences, each run alone (no padding).
        hidden_state: the tensor to pool; ``None`` finds it in this graph (see :func:`hidden_state_name`).

    Raises:
        MissingDependencyError: onnx, onnxruntime or transformers is not installed.
        UserError: the folder is not a readable encoder export, or the tensor is not in its graph.
    """
    onnx = require_module("onnx", "the embedding check", extra_install_hint("onnx"))
    ort = require_module("onnxruntime", "the embedding check", extra_install_hint("onnx"))
    spec = read_head_spec(folder)
    tokenizer = load_tokenizer(folder)
    path = folder / MODEL_FILE
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # OSError for a missing file, protobuf's DecodeError for a corrupt one
        raise UserError(f"cannot read {path} ({first_line(exc)})") from exc
    name = hidden_state or hidden_state_name(model.graph, spec.task)
    produced = {output for node in model.graph.node for output in node.output}
    if name not in produced:
        raise UserError(f"{path} has no tensor named {name}: it is not the same encoder as the one it is compared to")
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    settings = ort.SessionOptions()
    settings.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), sess_options=settings, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise UserError(f"onnxruntime cannot load {path} ({first_line(exc)})") from exc
    rows = []
    for text in texts:
        encoded = tokenizer(
            text, truncation=True, max_length=spec.max_length, return_tensors="np", return_token_type_ids=True
        )
        feeds = {item: np.asarray(encoded[item], dtype=np.int64) for item in spec.inputs}
        (hidden,) = session.run([name], feeds)
        mask = np.asarray(encoded["attention_mask"][0], dtype=np.float64)[:, None]
        rows.append((np.asarray(hidden[0], dtype=np.float64) * mask).sum(axis=0) / max(float(mask.sum()), 1.0))
    return np.stack(rows)


def embedding_cosines(fp32_dir: Path, quantized_dir: Path, texts: Sequence[str] = DEFAULT_TEXTS) -> tuple[float, ...]:
    """The cosine similarity of each text's sentence embedding, float32 export against quantized variant.

    Raises:
        UserError: no texts, or either folder is not a readable encoder export of the same graph.
    """
    if not texts:
        raise UserError("the embedding check needs at least one text")
    onnx = require_module("onnx", "the embedding check", extra_install_hint("onnx"))
    spec = read_head_spec(fp32_dir)
    graph = onnx.load(str(fp32_dir / MODEL_FILE), load_external_data=False).graph
    name = hidden_state_name(graph, spec.task)
    reference = sentence_embeddings(fp32_dir, texts, name)
    candidate = sentence_embeddings(quantized_dir, texts, name)
    return tuple(_cosine(left, right) for left, right in zip(reference, candidate, strict=True))


def embedding_cosine(fp32_dir: Path, quantized_dir: Path, texts: Sequence[str] = DEFAULT_TEXTS) -> float:
    """The smallest cosine similarity of the sentence embeddings of ``texts``, float32 against quantized.

    Both folders hold an ONNX encoder head graph of the same model (see the module's description).

    Raises:
        UserError: no texts, or either folder is not a readable encoder export of the same graph.
    """
    return min(embedding_cosines(fp32_dir, quantized_dir, texts))


def _cosine(left: np.ndarray, right: np.ndarray) -> float:
    norms = float(np.linalg.norm(left) * np.linalg.norm(right))
    if norms == 0.0:
        return 1.0 if not left.any() and not right.any() else 0.0
    return float(np.dot(left, right) / norms)
