"""What an encoder's task head means, shared by every runtime (PyTorch, ONNX Runtime).

A runtime tokenizes a request with :func:`encode`, runs its model on the ids, and hands the raw logits to
:func:`to_prediction`, which turns them into an answer span (extractive QA), entities (token
classification) or a label (sequence classification). Keeping this in one numpy-only module is what makes
the PyTorch and ONNX variants of one model give the same answers for the same logits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slm_eval.backends.base import EncoderPrediction, EncoderRequest, EncoderTask
from slm_eval.errors import UserError
from slm_eval.tasks.border.entities import ENTITY_TYPES, THREAT_LABELS

ENCODER_TASKS: tuple[EncoderTask, ...] = ("qa", "ner", "classify")
# The transformers Auto class of each head.
HEAD_CLASSES: dict[EncoderTask, str] = {
    "qa": "AutoModelForQuestionAnswering",
    "ner": "AutoModelForTokenClassification",
    "classify": "AutoModelForSequenceClassification",
}
# What each head's ONNX graph returns, in order.
HEAD_OUTPUTS: dict[EncoderTask, tuple[str, ...]] = {
    "qa": ("start_logits", "end_logits"),
    "ner": ("logits",),
    "classify": ("logits",),
}
MAX_ANSWER_TOKENS = 30
UNTRAINED_HEAD_WARNING = (
    "the {task} head of {model} is randomly initialised (not trained): its answers and scores are "
    "meaningless until the head is fine-tuned on the task"
)


def parse_encoder_task(value: str) -> EncoderTask:
    """The encoder task named by ``value`` (``qa``, ``ner`` or ``classify``).

    Raises:
        UserError: an unknown task.
    """
    name = value.strip().lower()
    for task in ENCODER_TASKS:
        if name == task:
            return task
    raise UserError(f"unknown encoder task '{value}': choose one of {', '.join(ENCODER_TASKS)}")


def default_labels(task: EncoderTask) -> tuple[str, ...]:
    """The labels a fresh head is built with: BIO tags of the border entity types, or the threat labels."""
    if task == "ner":
        return ("O", *(f"{prefix}-{name}" for name in ENTITY_TYPES for prefix in ("B", "I")))
    if task == "classify":
        return THREAT_LABELS
    return ()


def labels_from_config(id2label: Mapping[Any, str] | None, task: EncoderTask) -> tuple[str, ...] | None:
    """The labels a model's config declares for ``task``, or ``None`` when they are transformers' placeholders."""
    if task == "qa" or not id2label:
        return None
    ordered = [str(id2label[key]) for key in sorted(id2label, key=int)]
    if all(label.upper().startswith("LABEL_") for label in ordered):
        return None
    return tuple(ordered)


@dataclass(frozen=True)
class EncodedInput:
    """One tokenized request.

    Attributes:
        input_ids, attention_mask, token_type_ids: the model's inputs for one sequence.
        offsets: each token's (start, end) character offsets in its own text; (0, 0) for special tokens.
        sequence_ids: which text each token came from (0 the question or text, 1 the context, ``None`` special).
        word_ids: the word each token belongs to (sub-word pieces share one), ``None`` for special tokens.
    """

    input_ids: tuple[int, ...]
    attention_mask: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    sequence_ids: tuple[int | None, ...]
    word_ids: tuple[int | None, ...] = ()

    def arrays(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The inputs named in ``names`` as int64 arrays of shape (1, tokens)."""
        table = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }
        return {name: np.asarray([table[name]], dtype=np.int64) for name in names if name in table}


def encode(tokenizer: Any, task: EncoderTask, request: EncoderRequest, max_length: int) -> EncodedInput:
    """Tokenize ``request`` for ``task`` with a fast Hugging Face tokenizer (offsets come from it).

    For ``qa`` the question comes first and only the context is truncated to fit ``max_length``.

    Raises:
        UserError: empty text, or a ``qa`` request without a context.
    """
    if not request.text.strip():
        raise UserError("empty input: give some text for the encoder")
    if task == "qa":
        if not request.context or not request.context.strip():
            raise UserError("extractive QA needs a context: the passage the answer is taken from (--context)")
        question_tokens = len(tokenizer(request.text, add_special_tokens=False)["input_ids"])
        if question_tokens + 3 >= max_length:
            raise UserError(
                f"the question is {question_tokens} tokens, which leaves no room for the context in the "
                f"model's window of {max_length}; shorten the question or raise --context-length"
            )
        encoded = tokenizer(
            request.text,
            request.context,
            truncation="only_second",
            max_length=max_length,
            return_offsets_mapping=True,
            return_token_type_ids=True,
        )
    else:
        encoded = tokenizer(
            request.text,
            truncation=True,
            max_length=max_length,
            return_offsets_mapping=True,
            return_token_type_ids=True,
        )
    ids = tuple(int(token) for token in encoded["input_ids"])
    return EncodedInput(
        input_ids=ids,
        attention_mask=tuple(int(mask) for mask in encoded["attention_mask"]),
        token_type_ids=tuple(int(kind) for kind in encoded.get("token_type_ids") or [0] * len(ids)),
        offsets=tuple((int(start), int(end)) for start, end in encoded["offset_mapping"]),
        sequence_ids=tuple(encoded.sequence_ids(0)),
        word_ids=tuple(encoded.word_ids(0)),
    )


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def extract_span(
    start_logits: np.ndarray, end_logits: np.ndarray, encoded: EncodedInput, context: str
) -> tuple[str, int, int, float]:
    """The best answer span in the context: its text, character offsets and probability.

    The span maximises start + end logits over context tokens, with end >= start and at most
    :data:`MAX_ANSWER_TOKENS` tokens, as the SQuAD reference post-processing does.
    """
    in_context = np.array([sid == 1 and encoded.offsets[i] != (0, 0) for i, sid in enumerate(encoded.sequence_ids)])
    if not in_context.any():
        return "", 0, 0, 0.0
    start = np.where(in_context, start_logits.astype(np.float64), -np.inf)
    end = np.where(in_context, end_logits.astype(np.float64), -np.inf)
    start_p = _softmax(start)
    end_p = _softmax(end)
    best = (-np.inf, 0, 0)
    for position in np.flatnonzero(in_context):
        first_token = int(position)
        window = end[first_token : first_token + MAX_ANSWER_TOKENS]
        last_token = int(np.argmax(window)) + first_token
        total = float(start[first_token] + end[last_token])
        if total > best[0]:
            best = (total, first_token, last_token)
    _, i, j = best
    first, last = encoded.offsets[i][0], encoded.offsets[j][1]
    return context[first:last], first, last, float(start_p[i] * end_p[j])


def decode_entities(
    logits: np.ndarray, encoded: EncodedInput, text: str, labels: Sequence[str]
) -> tuple[list[dict[str, Any]], float | None]:
    """Entities from per-token BIO logits, merged into character spans, and their mean token probability.

    Each word takes the tag of its first sub-word piece (its other pieces follow it, whatever their own
    tags). A ``B-`` tag starts an entity; an ``I-`` tag of the same type continues the entity of the
    previous word; an ``I-`` tag after anything else starts one (models make that mistake early in
    training). Punctuation is a word of its own, so it joins an entity only when tagged as part of it.
    """
    probabilities = _softmax(logits.astype(np.float64))
    tags = probabilities.argmax(axis=-1)
    words = encoded.word_ids or tuple(None if sid is None else index for index, sid in enumerate(encoded.sequence_ids))
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    confidences: list[float] = []
    previous_word: int | None = None
    for index, (first, last) in enumerate(encoded.offsets):
        word = words[index] if index < len(words) else None
        if encoded.sequence_ids[index] is None or word is None or first == last:
            current, previous_word = None, None
            continue
        if word == previous_word:
            if current is not None:
                current["end"] = last  # a later piece of the word: it belongs where the word's first piece went
            continue
        previous_word = word
        tag = int(tags[index])
        label = labels[tag] if tag < len(labels) else "O"
        prefix, _, kind = label.partition("-")
        if label == "O" or not kind:
            current = None
            continue
        confidences.append(float(probabilities[index, tag]))
        if current is not None and current["type"] == kind and prefix == "I":
            current["end"] = last
            continue
        current = {"type": kind, "start": first, "end": last}
        entities.append(current)
    ordered = [
        {"text": text[e["start"] : e["end"]], "type": e["type"], "start": e["start"], "end": e["end"]} for e in entities
    ]
    return ordered, (float(np.mean(confidences)) if confidences else None)


def to_prediction(
    task: EncoderTask,
    outputs: Mapping[str, np.ndarray],
    encoded: EncodedInput,
    request: EncoderRequest,
    labels: Sequence[str],
    started_at: float,
    finished_at: float,
) -> EncoderPrediction:
    """Turn one request's raw head outputs (batch of one) into its prediction."""
    tokens = len(encoded.input_ids)
    if task == "qa":
        context = request.context or ""
        text, start, end, probability = extract_span(
            np.asarray(outputs["start_logits"]).reshape(-1)[:tokens],
            np.asarray(outputs["end_logits"]).reshape(-1)[:tokens],
            encoded,
            context,
        )
        return EncoderPrediction(text, tokens, started_at, finished_at, probability, {"start": start, "end": end})
    logits = np.asarray(outputs["logits"])
    if task == "ner":
        entities, confidence = decode_entities(
            logits.reshape(-1, logits.shape[-1])[:tokens], encoded, request.text, labels
        )
        payload = json.dumps({"entities": [{"text": e["text"], "type": e["type"]} for e in entities]})
        return EncoderPrediction(payload, tokens, started_at, finished_at, confidence, {"entities": entities})
    probabilities = _softmax(logits.reshape(-1).astype(np.float64))
    best = int(probabilities.argmax())
    label = labels[best] if best < len(labels) else str(best)
    scores = {(labels[i] if i < len(labels) else str(i)): float(p) for i, p in enumerate(probabilities)}
    return EncoderPrediction(label, tokens, started_at, finished_at, float(probabilities[best]), {"scores": scores})
