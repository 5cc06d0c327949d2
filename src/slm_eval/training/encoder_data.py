"""Training features for encoder heads: extractive QA spans, BIO entity tags, and class labels.

Container-safe: imports only the standard library and :mod:`slm_eval.errors`; the border label sets come
from :mod:`slm_eval.backends.encoder_heads` (numpy and standard-library modules of this package only),
imported when a default label set is needed.

Every feature is tokenized the way :func:`slm_eval.backends.encoder_heads.encode` tokenizes a request at
evaluation (question first, only the context truncated; one text truncated at ``max_length``), with the fast
tokenizer's character offsets, so what the head learns is what the evaluation reads back:

- ``qa``: ``start_positions``/``end_positions`` are the first and last tokens of the answer. A context too
  long for ``max_length`` is cut into overlapping windows and the first window holding the whole answer is
  kept; when none does (or the record has no answer), the example is labelled with the CLS token (0, 0), as
  SQuAD training does.
- ``ner``: each word's first token gets ``B-<type>`` when the word starts an entity, ``I-<type>`` when it
  continues one, else ``O``; the word's other tokens and special tokens get ``-100`` — exactly how
  :func:`~slm_eval.backends.encoder_heads.decode_entities` reads tags back (a word takes its first piece's tag).
- ``classify``: the record's label index.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slm_eval.errors import UserError
from slm_eval.training.job import TrainTask

log = logging.getLogger("slm_eval.training.encoder_data")
IGNORE_INDEX = -100
QA_FIELDS = ("id", "question", "context", "answers")
NER_FIELDS = ("id", "text", "entities")
CLASSIFY_FIELDS = ("id", "text", "label")
FIELDS: dict[str, tuple[str, ...]] = {"qa": QA_FIELDS, "ner": NER_FIELDS, "classify": CLASSIFY_FIELDS}


@dataclass(frozen=True)
class EncoderExamples:
    """Tokenized encoder examples.

    Attributes:
        features: one dict per example: the model's inputs (lists of ints) and its labels.
        labels: the head's label names (empty for ``qa``).
        unanswered: ``qa`` examples labelled CLS (no answer, or none inside any window).
        truncated: ``ner``/``classify`` texts cut at ``max_length``.
    """

    features: list[dict[str, Any]]
    labels: tuple[str, ...]
    unanswered: int = 0
    truncated: int = 0


def resolve_labels(task: TrainTask, given: Sequence[str]) -> tuple[str, ...]:
    """The head's labels: those given, else the border-control defaults (BIO entity tags, threat labels).

    Raises:
        UserError: a ``ner`` label set without ``O``, or with a ``B-`` tag lacking its ``I-`` tag.
    """
    if task == "qa" or task == "sft":
        return ()
    if given:
        labels = tuple(given)
    else:
        from slm_eval.backends.encoder_heads import default_labels

        labels = default_labels(task)
    if len(set(labels)) != len(labels):
        raise UserError(f"--labels repeats a label: {list(labels)}")
    if task == "ner":
        if "O" not in labels:
            raise UserError("--labels for ner must include O (outside any entity) and B-/I- tags per type")
        for label in labels:
            prefix, _, kind = label.partition("-")
            if label != "O" and (prefix not in ("B", "I") or not kind):
                raise UserError(f"ner label '{label}' is not a BIO tag: use O, B-<TYPE> and I-<TYPE>")
            if prefix == "B" and f"I-{kind}" not in labels:
                raise UserError(f"ner labels have B-{kind} but not I-{kind}: give both")
    return labels


def build_encoder_examples(
    task: TrainTask, records: Sequence[Mapping[str, Any]], tokenizer: Any, *, max_length: int, labels: Sequence[str]
) -> EncoderExamples:
    """Tokenize the records of ``task`` (``qa``, ``ner`` or ``classify``) into features with labels.

    Raises:
        UserError: the tokenizer is not a fast one (no offsets), or a record's fields are malformed (the
            message names the record).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("encoder training needs a fast tokenizer (tokenizer.json) for its character offsets")
    if task == "qa":
        return build_qa_examples(records, tokenizer, max_length=max_length)
    if task == "ner":
        return build_ner_examples(records, tokenizer, max_length=max_length, labels=labels)
    if task == "classify":
        return build_classify_examples(records, tokenizer, max_length=max_length, labels=labels)
    raise UserError(f"task {task} does not train an encoder: choose qa, ner or classify")


def _inputs(encoded: Mapping[str, Any], tokenizer: Any, index: int | None = None) -> dict[str, Any]:
    """The model inputs the tokenizer declares (``token_type_ids`` only where the model takes them)."""
    names = [name for name in getattr(tokenizer, "model_input_names", ("input_ids", "attention_mask"))]
    picked: dict[str, Any] = {}
    for name in names:
        if name in encoded:
            values = encoded[name] if index is None else encoded[name][index]
            picked[name] = [int(value) for value in values]
    return picked


def answer_span(record: Mapping[str, Any]) -> tuple[int, int] | None:
    """The first answer's character span in the context, or ``None`` for a record without an answer.

    An ``answer_start`` off by a few characters (as in some SQuAD copies) is moved to the nearest place the
    answer text occurs.

    Raises:
        UserError: ``answers`` is malformed, or its text is nowhere in the context.
    """
    context, answers, name = record["context"], record["answers"], record.get("id", "?")
    if not isinstance(context, str) or not isinstance(record["question"], str):
        raise UserError(f"record {name!s}: 'question' and 'context' must be text")
    if not isinstance(answers, Mapping) or not isinstance(answers.get("text"), list):
        raise UserError(f'record {name!s}: \'answers\' must be {{"text": [...], "answer_start": [...]}}')
    texts, starts = answers["text"], answers.get("answer_start") or []
    if not texts:
        return None
    text = texts[0]
    if not isinstance(text, str) or not text:
        raise UserError(f"record {name!s}: the first answer text is empty or not text")
    start = starts[0] if starts and isinstance(starts[0], int) else -1
    if context[start : start + len(text)] == text and start >= 0:
        return start, start + len(text)
    places = [index for index in range(len(context)) if context.startswith(text, index)]
    if not places:
        raise UserError(f"record {name!s}: the answer {text!r} is not in its context; fix or re-prepare the dataset")
    nearest = min(places, key=lambda index: abs(index - start))
    return nearest, nearest + len(text)


def build_qa_examples(records: Sequence[Mapping[str, Any]], tokenizer: Any, *, max_length: int) -> EncoderExamples:
    """Question/context features with the answer's first and last token (CLS, 0, when it is not inside).

    Raises:
        UserError: a malformed record, or a question that leaves no room for the context.
    """
    features: list[dict[str, Any]] = []
    unanswered = 0
    stride = max(8, max_length // 4)
    for record in records:
        span = answer_span(record)
        question = record["question"].strip()
        question_tokens = len(tokenizer(question, add_special_tokens=False)["input_ids"])
        if question_tokens + 3 + stride >= max_length:
            raise UserError(
                f"record {record.get('id', '?')!s}: the question is {question_tokens} tokens, leaving no room for "
                f"the context in --max-length {max_length}; raise --max-length or shorten the question"
            )
        encoded = tokenizer(
            question,
            record["context"],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
        )
        chosen = 0
        positions = (0, 0)
        for window in range(len(encoded["input_ids"])):
            found = None if span is None else _token_span(encoded, window, span)
            if found is not None:
                chosen, positions = window, found
                break
        if positions == (0, 0):
            unanswered += 1
        feature = _inputs(encoded, tokenizer, chosen)
        feature["start_positions"], feature["end_positions"] = positions
        features.append(feature)
    if unanswered:
        log.info("%d of %d QA example(s) labelled CLS: no answer, or none inside the window", unanswered, len(records))
    return EncoderExamples(features=features, labels=(), unanswered=unanswered)


def _token_span(encoded: Any, window: int, span: tuple[int, int]) -> tuple[int, int] | None:
    """The first and last context tokens of ``span`` in one window, or ``None`` when it is not wholly inside."""
    offsets = encoded["offset_mapping"][window]
    sequence_ids = encoded.sequence_ids(window)
    context = [index for index, sid in enumerate(sequence_ids) if sid == 1 and offsets[index][1] > offsets[index][0]]
    if not context:
        return None
    start_char, end_char = span
    if offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return None
    first = next(index for index in context if offsets[index][1] > start_char)
    last = next(index for index in reversed(context) if offsets[index][0] < end_char)
    return (first, last) if last >= first else None


def _checked_entities(record: Mapping[str, Any], kinds: set[str]) -> list[tuple[int, int, str]]:
    text, entities, name = record["text"], record["entities"], record.get("id", "?")
    if not isinstance(text, str) or not isinstance(entities, list):
        raise UserError(f"record {name!s}: 'text' must be text and 'entities' a list")
    spans: list[tuple[int, int, str]] = []
    for entity in entities:
        try:
            start, end, kind = int(entity["start"]), int(entity["end"]), str(entity["type"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"record {name!s}: each entity needs integer 'start', 'end' and a 'type'") from exc
        if not 0 <= start < end <= len(text):
            raise UserError(f"record {name!s}: entity {start}-{end} lies outside its text of {len(text)} characters")
        if kind not in kinds:
            raise UserError(
                f"record {name!s}: entity type {kind!r} has no B-/I- label; known types: {', '.join(sorted(kinds))}"
            )
        spans.append((start, end, kind))
    return sorted(spans)


def build_ner_examples(
    records: Sequence[Mapping[str, Any]], tokenizer: Any, *, max_length: int, labels: Sequence[str]
) -> EncoderExamples:
    """Token features with a BIO tag on each word's first token (``-100`` elsewhere).

    Raises:
        UserError: a malformed record or an entity type outside ``labels``.
    """
    index_of = {label: index for index, label in enumerate(labels)}
    kinds = {label[2:] for label in labels if label.startswith("B-")}
    features: list[dict[str, Any]] = []
    truncated = 0
    for record in records:
        spans = _checked_entities(record, kinds)
        encoded = tokenizer(
            record["text"],
            truncation=True,
            max_length=max_length,
            return_offsets_mapping=True,
            return_token_type_ids=True,
            return_overflowing_tokens=False,
        )
        offsets = [(int(a), int(b)) for a, b in encoded["offset_mapping"]]
        word_ids = encoded.word_ids(0)
        word_spans: dict[int, tuple[int, int]] = {}
        for index, word in enumerate(word_ids):
            if word is None or offsets[index][0] == offsets[index][1]:
                continue
            first, last = word_spans.get(word, offsets[index])
            word_spans[word] = (min(first, offsets[index][0]), max(last, offsets[index][1]))
        tags = [IGNORE_INDEX] * len(word_ids)
        previous_word: int | None = None
        previous_entity: int | None = None
        for index, word in enumerate(word_ids):
            if word is None or word == previous_word or offsets[index][0] == offsets[index][1]:
                continue
            previous_word = word
            start, end = word_spans[word]
            entity = next((n for n, (a, b, _) in enumerate(spans) if a < end and b > start), None)
            if entity is None:
                tags[index], previous_entity = index_of["O"], None
                continue
            prefix = "I" if entity == previous_entity else "B"
            tags[index], previous_entity = index_of[f"{prefix}-{spans[entity][2]}"], entity
        if spans and spans[-1][1] > max(offsets, key=lambda pair: pair[1])[1]:
            truncated += 1
        feature = _inputs(encoded, tokenizer)
        feature["labels"] = tags
        features.append(feature)
    if truncated:
        log.info("%d NER text(s) cut at %d tokens lose their last entities", truncated, max_length)
    return EncoderExamples(features=features, labels=tuple(labels), truncated=truncated)


def build_classify_examples(
    records: Sequence[Mapping[str, Any]], tokenizer: Any, *, max_length: int, labels: Sequence[str]
) -> EncoderExamples:
    """Text features with the index of their label.

    Raises:
        UserError: a record's text is not text, or its label is not one of ``labels``.
    """
    index_of = {label: index for index, label in enumerate(labels)}
    features: list[dict[str, Any]] = []
    truncated = 0
    for record in records:
        text, label = record["text"], record["label"]
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"record {record.get('id', '?')!s}: 'text' must be non-empty text")
        if label not in index_of:
            raise UserError(
                f"record {record.get('id', '?')!s}: label {label!r} is not one of {', '.join(labels)}; "
                "fix the record or give --labels"
            )
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_token_type_ids=True)
        full = len(tokenizer(text, add_special_tokens=True)["input_ids"])
        truncated += int(full > max_length)
        feature = _inputs(encoded, tokenizer)
        feature["labels"] = index_of[label]
        features.append(feature)
    if truncated:
        log.info("%d text(s) cut at %d tokens", truncated, max_length)
    return EncoderExamples(features=features, labels=tuple(labels), truncated=truncated)
