"""SQuAD-format extractive question answering: local JSON/JSONL files, the built-in border-qa set, HF SQuAD.

``resolve_task`` maps the ``--dataset`` option to a task::

    slm-eval evaluate --model smollm2-135m-instruct --dataset border-qa --limit 20 --seed 1
    slm-eval evaluate --model smollm2-135m-instruct --dataset my_questions.jsonl
"""

from __future__ import annotations

import difflib
import importlib
import importlib.resources
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from slm_eval.errors import MissingDependencyError, UserError
from slm_eval.metrics.quality import exact_match, token_f1
from slm_eval.tasks.base import Example

BUILTIN_NAME = "border-qa"
HF_SQUAD_NAME = "squad"
HF_SQUAD_ID = "rajpurkar/squad"

_FORMAT_HINT = "fix the file so it follows the SQuAD v1.1 JSON or JSONL format"
_NOT_SQUAD = (
    "expected a SQuAD v1.1 JSON object with a 'data' list or a JSONL file with one "
    "{'id', 'question', 'context', 'answers'} record per line"
)
_ANSWERS_SHAPE = (
    "'answers' must be {'text': [...], 'answer_start': [...]} or a list of {'text', 'answer_start'} objects"
)
_ANSWER_PREFIX = re.compile(r"^[\s*#>_]*answer\s*[*_]*\s*:\s*[*_]*", re.IGNORECASE)
_STRIP_CHARS = " \t\r\n\"'`*\u201c\u201d\u2018\u2019\u00ab\u00bb"

PROMPT_TEMPLATE = (
    "Answer the question using only the context below. Reply with the shortest span of words "
    "copied exactly from the context, with no explanation.\n\n"
    "Context: {context}\n\n"
    "Question: {question}\n\n"
    "Answer:"
)
PROMPT_TEMPLATE_NO_CONTEXT = (
    "Answer the question with a short phrase, with no explanation.\n\nQuestion: {question}\n\nAnswer:"
)


class _InvalidRecordError(Exception):
    """A problem at one place of a dataset; the loader adds the file name and turns it into a UserError."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _require_str(record: Mapping[str, Any], key: str, where: str, *, allow_int: bool = False) -> str:
    if key not in record:
        raise _InvalidRecordError(where, f"missing '{key}'")
    value = record[key]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _InvalidRecordError(where, f"'{key}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _InvalidRecordError(where, f"'{key}' is empty")
    return value


def _require_list(record: Mapping[str, Any], key: str, where: str) -> list[Any]:
    if key not in record:
        raise _InvalidRecordError(where, f"missing '{key}'")
    value = record[key]
    if not isinstance(value, list):
        raise _InvalidRecordError(where, f"'{key}' must be a list, got {type(value).__name__}")
    return value


def _require_object(value: object, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _InvalidRecordError(where, f"{what} must be an object, got {type(value).__name__}")
    return value


def _check_start(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _InvalidRecordError(where, f"'answer_start' must be a non-negative integer, got {value!r}")


def _answer_texts(answers: object, where: str) -> tuple[str, ...]:
    """The reference texts from either answer style, in order, without repeats."""
    texts: list[str] = []
    if isinstance(answers, Mapping):
        raw_texts = answers.get("text")
        if not isinstance(raw_texts, list):
            raise _InvalidRecordError(f"{where}.answers", _ANSWERS_SHAPE)
        starts = answers.get("answer_start")
        if starts is not None:
            if not isinstance(starts, list) or len(starts) != len(raw_texts):
                raise _InvalidRecordError(f"{where}.answers", "'answer_start' must be a list as long as 'text'")
            for index, start in enumerate(starts):
                _check_start(start, f"{where}.answers.answer_start[{index}]")
        for index, text in enumerate(raw_texts):
            if not isinstance(text, str) or not text.strip():
                raise _InvalidRecordError(f"{where}.answers.text[{index}]", "an answer must be a non-empty string")
            texts.append(text)
    elif isinstance(answers, list):
        for index, item in enumerate(answers):
            answer_where = f"{where}.answers[{index}]"
            answer = _require_object(item, answer_where, "an answer")
            texts.append(_require_str(answer, "text", answer_where))
            if "answer_start" in answer:
                _check_start(answer["answer_start"], answer_where)
    else:
        raise _InvalidRecordError(f"{where}.answers", _ANSWERS_SHAPE)
    if not texts:
        raise _InvalidRecordError(where, "no answers (unanswerable SQuAD v2 questions are not supported)")
    return tuple(dict.fromkeys(texts))


def _example(record: Mapping[str, Any], where: str, context: str | None = None, title: str | None = None) -> Example:
    """One example from a question record; ``context`` and ``title`` come from the paragraph when nested."""
    question_id = _require_str(record, "id", where, allow_int=True)
    question = _require_str(record, "question", where)
    if context is None:
        context = _require_str(record, "context", where)
    if "answers" not in record:
        raise _InvalidRecordError(where, "missing 'answers'")
    references = _answer_texts(record["answers"], where)
    if title is None:
        raw_title = record.get("title")
        title = raw_title if isinstance(raw_title, str) else None
    metadata = {"title": title} if title else {}
    return Example(id=question_id, question=question, references=references, context=context, metadata=metadata)


def _from_squad_json(document: Mapping[str, Any]) -> Iterable[tuple[str, Example]]:
    """Yields (key path, example) for every question of a nested SQuAD v1.1 document."""
    for article_index, raw_article in enumerate(_require_list(document, "data", "top level")):
        article_where = f"data[{article_index}]"
        article = _require_object(raw_article, article_where, "an article")
        raw_title = article.get("title")
        title = raw_title if isinstance(raw_title, str) and raw_title.strip() else None
        for paragraph_index, raw_paragraph in enumerate(_require_list(article, "paragraphs", article_where)):
            paragraph_where = f"{article_where}.paragraphs[{paragraph_index}]"
            paragraph = _require_object(raw_paragraph, paragraph_where, "a paragraph")
            context = _require_str(paragraph, "context", paragraph_where)
            for qa_index, raw_qa in enumerate(_require_list(paragraph, "qas", paragraph_where)):
                qa_where = f"{paragraph_where}.qas[{qa_index}]"
                qa = _require_object(raw_qa, qa_where, "a question")
                yield qa_where, _example(qa, qa_where, context=context, title=title)


def _from_jsonl(lines: Sequence[str]) -> Iterable[tuple[str, Example]]:
    """Yields (``line N``, example) for every non-blank line of a JSONL file."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _InvalidRecordError(where, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
        yield where, _example(_require_object(record, where, "a record"), where)


def _collect(path_label: str, items: Iterable[tuple[str, Example]]) -> list[Example]:
    """Materialises examples, rejecting duplicate ids and empty datasets."""
    examples: list[Example] = []
    first_seen: dict[str, str] = {}
    for where, example in items:
        if example.id in first_seen:
            raise _InvalidRecordError(where, f"duplicate id '{example.id}' (first used at {first_seen[example.id]})")
        first_seen[example.id] = where
        examples.append(example)
    if not examples:
        raise UserError(f"{path_label}: the dataset holds no questions; add at least one or pick another --dataset")
    return examples


def _looks_like_record(value: object) -> bool:
    return isinstance(value, Mapping) and any(key in value for key in ("id", "question", "context", "answers"))


def load_squad_file(path: Path) -> list[Example]:
    """Loads a SQuAD v1.1 JSON file or a JSONL file of question records.

    JSONL records are ``{"id", "question", "context", "answers"}`` (optionally ``"title"``), with answers
    either in HF-datasets style ``{"text": [...], "answer_start": [...]}`` or as a list of
    ``{"text", "answer_start"}`` objects. Answers need not be substrings of the context.

    Args:
        path: the dataset file.

    Returns:
        The examples in file order, with ``metadata={"title": ...}`` when the file names one.

    Raises:
        UserError: the file is missing, unreadable, not SQuAD-format, empty, or has a bad record
            (the message names the file and the line number or JSON key path).
    """
    if not path.exists():
        raise UserError(f"dataset file not found: {path}; pass an existing SQuAD JSON/JSONL file")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a dataset file; pass a SQuAD JSON/JSONL file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; {_NOT_SQUAD}") from None
    except OSError as exc:
        raise UserError(f"cannot read dataset file {path}: {exc.strerror or exc}; check its permissions") from None
    if not text.strip():
        raise UserError(f"{path}: the dataset holds no questions (the file is empty); pick another --dataset")
    try:
        document: object = json.loads(text)
    except json.JSONDecodeError:
        document = None
    try:
        if isinstance(document, Mapping) and "data" in document:
            return _collect(str(path), _from_squad_json(document))
        lines = text.splitlines()
        first = next(line for line in lines if line.strip())
        try:
            first_record: object = json.loads(first)
        except json.JSONDecodeError:
            first_record = None
        if not _looks_like_record(first_record):
            raise UserError(f"{path}: not a SQuAD dataset: {_NOT_SQUAD}")
        return _collect(str(path), _from_jsonl(lines))
    except _InvalidRecordError as exc:
        raise UserError(f"{path}: {exc.where}: {exc.problem}; {_FORMAT_HINT}") from None


def builtin_border_qa_path() -> Path:
    """The path of the built-in border-control QA set (SQuAD v1.1 JSON) inside the installed package."""
    resource = importlib.resources.files("slm_eval.tasks") / "data" / "border_qa.json"
    return Path(str(resource))


def load_builtin_border_qa() -> list[Example]:
    """Loads the built-in border-control QA set.

    Raises:
        UserError: the data file is missing from the installation.
    """
    path = builtin_border_qa_path()
    if not path.is_file():
        raise UserError(f"the built-in border-qa set is missing ({path}); reinstall slm-eval with its package data")
    return load_squad_file(path)


def load_hf_squad(split: str = "validation") -> list[Example]:
    """Loads SQuAD v1.1 from the Hugging Face hub through the optional ``datasets`` package.

    Args:
        split: ``"validation"`` (10,570 questions) or ``"train"``.

    Raises:
        UserError: ``datasets`` is not installed, the hub cannot be reached, or a row is malformed.
    """
    offline_hint = "offline, use --dataset PATH for a local SQuAD file or --dataset border-qa for the built-in set"
    try:
        datasets = importlib.import_module("datasets")
    except ImportError:
        raise MissingDependencyError(
            "datasets",
            f"--dataset squad (downloads SQuAD v1.1 and needs a network; {offline_hint})",
            "pip install datasets",
        ) from None
    try:
        rows = datasets.load_dataset(HF_SQUAD_ID, split=split)
    except Exception as exc:  # the hub raises many kinds: connection, offline mode, missing dataset
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"could not load SQuAD v1.1 ({HF_SQUAD_ID}, split {split!r}) from the Hugging Face hub: {detail}; "
            f"it needs a network: {offline_hint}"
        ) from None
    label = f"{HF_SQUAD_ID} ({split})"
    try:
        items = ((f"row {index}", _example(row, f"row {index}")) for index, row in enumerate(rows))
        return _collect(label, items)
    except _InvalidRecordError as exc:
        raise UserError(
            f"{label}: {exc.where}: {exc.problem}; update the datasets package or use --dataset PATH"
        ) from None


def extract_answer(output: str) -> str:
    """The answer span in a model's output: a leading ``Answer:`` removed, the first line, quotes stripped.

    Example: ``'Answer: "the Schengen area."\\nBecause ...'`` -> ``'the Schengen area.'``.
    """
    text = _ANSWER_PREFIX.sub("", output.strip(), count=1).lstrip()
    first_line = text.split("\n", 1)[0]
    return first_line.strip(_STRIP_CHARS)


class SquadTask:
    """Extractive QA scored with SQuAD v1.1 F1 and exact match (max over the references)."""

    def __init__(self, name: str, examples: Sequence[Example]) -> None:
        """Makes a task from loaded examples.

        Args:
            name: the task's name in records, e.g. ``border-qa``.
            examples: at least one example, in a stable order.

        Raises:
            UserError: ``examples`` is empty.
        """
        if not examples:
            raise UserError(f"the dataset '{name}' holds no questions; pick another --dataset")
        self._name = name
        self._examples = tuple(examples)

    @property
    def name(self) -> str:
        """The task's name in records and reports."""
        return self._name

    @property
    def metric_names(self) -> tuple[str, ...]:
        """``("f1", "exact_match")``, F1 first."""
        return ("f1", "exact_match")

    def examples(self) -> Sequence[Example]:
        """Every example, in file order."""
        return self._examples

    def prompt(self, example: Example) -> str:
        """A zero-shot extractive QA prompt: instruction, context, question, then ``Answer:``."""
        if example.context is None:
            return PROMPT_TEMPLATE_NO_CONTEXT.format(question=example.question.strip())
        return PROMPT_TEMPLATE.format(context=example.context.strip(), question=example.question.strip())

    @property
    def max_new_tokens(self) -> int:
        """Extractive answers are short spans."""
        return 48

    @property
    def corpus_metric_names(self) -> tuple[str, ...]:
        """None: SQuAD's F1 and exact match are means of per-example scores."""
        return ()

    def corpus_scores(self, scored: Sequence[tuple[Example, str]]) -> dict[str, float]:
        """No corpus-level scores."""
        return {}

    def parse_error(self, example: Example, output: str) -> str | None:
        """Any text is an answer; an empty one is reported."""
        return "empty answer" if not extract_answer(output) else None

    def score(self, example: Example, output: str) -> dict[str, float]:
        """F1 and exact match of the answer in ``output`` against the best-matching reference."""
        answer = extract_answer(output)
        return {
            "f1": token_f1(answer, example.references),
            "exact_match": exact_match(answer, example.references),
        }


def select_examples(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded random sample of ``limit`` examples, kept in their original order.

    Args:
        examples: the task's examples.
        limit: how many to keep; ``None`` keeps all, as does a limit above the dataset's size.
        seed: seeds the sample, so the same seed picks the same examples.

    Raises:
        UserError: ``limit`` is below 1.
    """
    items = list(examples)
    if limit is None:
        return items
    if limit < 1:
        raise UserError(f"--limit must be at least 1 (got {limit}); leave it out to use every example")
    if limit >= len(items):
        return items
    picked = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[index] for index in picked]


def resolve_task(dataset: str | None) -> SquadTask:
    """The QA task for a ``--dataset`` value.

    Args:
        dataset: ``None`` or ``"border-qa"`` for the built-in set, ``"squad"`` for SQuAD v1.1 validation from
            the Hugging Face hub, otherwise the path of a SQuAD JSON or JSONL file (the task takes its stem).

    Raises:
        UserError: the path does not exist or the dataset cannot be loaded.
    """
    if dataset is None or dataset == BUILTIN_NAME:
        return SquadTask(BUILTIN_NAME, load_builtin_border_qa())
    if dataset == HF_SQUAD_NAME:
        return SquadTask(HF_SQUAD_NAME, load_hf_squad("validation"))
    path = Path(dataset).expanduser()
    if not path.exists():
        names = [BUILTIN_NAME, HF_SQUAD_NAME]
        close = difflib.get_close_matches(dataset.lower(), names, n=1, cutoff=0.6)
        hint = f"did you mean --dataset {close[0]}? " if close else ""
        raise UserError(
            f"dataset '{dataset}' is neither a built-in dataset ({', '.join(names)}) nor an existing file; "
            f"{hint}pass the path of a SQuAD JSON/JSONL file"
        )
    return SquadTask(path.stem, load_squad_file(path))
