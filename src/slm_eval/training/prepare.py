"""Prepares a training dataset folder: training and validation records in the task's shape, and a card.

``prepare_dataset`` turns ``--dataset`` and the training task into ``<root>/<slug>-<task>-<sha12>/`` holding
``train/train.jsonl``, ``validation/validation.jsonl`` (one folder per SageMaker channel) and ``dataset.json``::

    slm-eval train --model smollm2-135m-instruct --dataset report-generation --limit 64
    slm-eval train --model all-minilm-l6-v2 --task qa --dataset border-qa

Datasets: ``border-qa`` (the built-in QA set, held out by paragraph), ``squad`` (SQuAD v1.1 from the Hugging Face
hub, online only), a use case (its generated training split, kept off its evaluation examples), ``border``
(border-qa and every use case, sft only) or the path of a SQuAD JSON/JSONL file or a JSONL file of records in the
task's shape. The same request always writes the same bytes; the seed only shuffles the training records.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example, Task
from slm_eval.tasks.catalogue import USE_CASES
from slm_eval.tasks.squad import BUILTIN_NAME, HF_SQUAD_NAME, load_builtin_border_qa, load_hf_squad, load_squad_file
from slm_eval.training import training_records as records_of
from slm_eval.training.dataset_folder import file_sha256, jsonl_bytes, write_folder
from slm_eval.training.job import TASKS as TRAIN_TASKS
from slm_eval.training.job import TrainTask
from slm_eval.training.sft_responses import gold_response
from slm_eval.training.training_records import Record
from slm_eval.training.training_splits import (
    BORDER_QA_VALIDATION_SHARE,
    DEFAULT_TRAIN_COUNT,
    DEFAULT_VALIDATION_COUNT,
    FILE_VALIDATION_SHARE,
    generate_use_case_split,
    hash_order,
    split_by_group,
)
from slm_eval.training.validation_tasks import qa_task, threat_label_task, use_case_task

BORDER_NAME = "border"
ENTITY_USE_CASE = "entity-threat-detection"
CARD_FILE = "dataset.json"
TRAIN_FILE = "train/train.jsonl"
VALIDATION_FILE = "validation/validation.jsonl"
HubSquadLoader = Callable[[], tuple[Sequence[Example], Sequence[Example]]]

_OFFLINE_VALUES = {"1", "true", "yes", "on"}
_SUPPORTED = {
    "sft": f"{BUILTIN_NAME}, {HF_SQUAD_NAME}, a use case ({', '.join(USE_CASES)}), {BORDER_NAME}, "
    "or a SQuAD JSON/JSONL file or a JSONL file of {prompt, response} records",
    "qa": f"{BUILTIN_NAME}, {HF_SQUAD_NAME} or a SQuAD JSON/JSONL file",
    "ner": f"{ENTITY_USE_CASE} or a JSONL file of {{text, entities}} records",
    "classify": f"{ENTITY_USE_CASE} or a JSONL file of {{text, label}} records",
}
_SHAPES = {
    "sft": '{"id", "prompt", "response", "source"}',
    "qa": '{"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}',
    "ner": '{"id", "text", "entities": [{"start", "end", "type"}]}',
    "classify": '{"id", "text", "label"}',
}


@dataclass(frozen=True)
class DatasetRequest:
    """What to prepare.

    Attributes:
        dataset: ``border-qa``, ``squad``, a use case, ``border`` or a file path.
        task: ``sft`` (decoders), ``qa``, ``ner`` or ``classify`` (encoders).
        seed: shuffles the training records (never changes which examples are held out).
        limit: at most this many training records.
        validation_limit: at most this many validation records.
    """

    dataset: str = BUILTIN_NAME
    task: TrainTask = "sft"
    seed: int = 0
    limit: int | None = None
    validation_limit: int | None = None


@dataclass(frozen=True)
class ValidationSet:
    """Validation examples of one source, with the task that prompts and scores them.

    Attributes:
        task: the task whose ``prompt()`` and ``score()`` apply (its ``examples()`` are these examples).
        examples: the examples, the same ones and in the same order as this source's lines of validation.jsonl.
        metric: the score to report from ``task.score()``.
    """

    task: Task
    examples: tuple[Example, ...]
    metric: str


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset folder and what it holds.

    Attributes:
        folder: ``<root>/<slug>-<task>-<sha256[:12]>``.
        task: the training task.
        sha256: of train.jsonl's bytes followed by validation.jsonl's.
        train_count, validation_count: records in each file.
        sources: the sources that gave records, e.g. ``("border-qa", "customs-help")``.
        validation_sets: one per source that has a scoring task (none for record-shaped files).
        card: the content of dataset.json.
        train_ids: the ids of the examples trained on.
    """

    folder: Path
    task: TrainTask
    sha256: str
    train_count: int
    validation_count: int
    sources: tuple[str, ...]
    validation_sets: tuple[ValidationSet, ...]
    card: Mapping[str, Any]
    train_ids: frozenset[str]

    @property
    def train_dir(self) -> Path:
        """The training channel's folder."""
        return self.folder / "train"

    @property
    def validation_dir(self) -> Path:
        """The validation channel's folder."""
        return self.folder / "validation"


@dataclass
class _Part:
    """One source's records before limits: training, validation, the validation examples and their task."""

    source: str
    train: list[Record]
    validation: list[Record]
    examples: dict[str, Example] = field(default_factory=dict)
    make_task: Callable[[Sequence[Example]], Task] | None = None
    metric: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


def prepare_dataset(
    request: DatasetRequest,
    root: Path,
    *,
    load_hub_squad: HubSquadLoader | None = None,
    environ: Mapping[str, str] | None = None,
) -> PreparedDataset:
    """Writes (or reuses) the dataset folder for ``request`` under ``root``.

    Args:
        request: the dataset, task, seed and limits.
        root: the folder that holds prepared datasets.
        load_hub_squad: returns SQuAD's (train, validation) examples; default: the Hugging Face hub via
            ``datasets`` (refused when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set).
        environ: the environment read for the offline flags (default: ``os.environ``).

    Raises:
        UserError: an unknown dataset or task, a dataset that cannot train the task, squad offline, a bad
            record (named by file, line and field), or no training records left.
    """
    task = _check_request(request)
    kind, label = _resolve(request.dataset)
    _check_pairing(kind, label, task)
    skipped: list[dict[str, str]] = []
    parts = _parts(kind, label, request, skipped, load_hub_squad, os.environ if environ is None else environ)
    train, validation = _limited(parts, request)
    if not train:
        raise UserError(f"{label}: no training records for {task}; pick another --dataset or raise --limit")
    train_bytes, validation_bytes = jsonl_bytes(train), jsonl_bytes(validation)
    sha256 = hashlib.sha256(train_bytes + validation_bytes).hexdigest()
    if kind == "file":
        path = Path(request.dataset).expanduser()
        described: dict[str, Any] = {"dataset": path.name, "file_sha256": file_sha256(path)}
    else:
        described = {"dataset": label}
    card = {
        "format": "slm-eval-training-dataset",
        "version": 1,
        **described,
        "task": task,
        "record_shape": _SHAPES[task],
        "seed": request.seed,
        "limit": request.limit,
        "validation_limit": request.validation_limit,
        "sha256": sha256,
        "files": {
            "train": {"path": TRAIN_FILE, "records": len(train), "sha256": hashlib.sha256(train_bytes).hexdigest()},
            "validation": {
                "path": VALIDATION_FILE,
                "records": len(validation),
                "sha256": hashlib.sha256(validation_bytes).hexdigest(),
            },
        },
        "order": "training records shuffled with random.Random(seed), then cut to limit; validation records in "
        "the sha256 order of source and id, then cut to validation_limit",
        "sources": [_source_card(part, train, validation) for part in parts],
        "skipped": skipped,
    }
    card_bytes = (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    slug = _slug(Path(request.dataset).stem if kind == "file" else label)
    files = {TRAIN_FILE: train_bytes, VALIDATION_FILE: validation_bytes, CARD_FILE: card_bytes}
    return PreparedDataset(
        folder=write_folder(root, f"{slug}-{task}-{sha256[:12]}", files),
        task=task,
        sha256=sha256,
        train_count=len(train),
        validation_count=len(validation),
        sources=tuple(part.source for part in parts if _source_card(part, train, validation)["train"]),
        validation_sets=_validation_sets(parts, validation),
        card=card,
        train_ids=frozenset(str(record["id"]) for record in train),
    )


def _parts(
    kind: str,
    label: str,
    request: DatasetRequest,
    skipped: list[dict[str, str]],
    load_hub_squad: HubSquadLoader | None,
    environ: Mapping[str, str],
) -> list[_Part]:
    """Each source's records before limits (a skipped use case noted in ``skipped``)."""
    task = request.task
    if kind == "file":
        return [_file_part(Path(request.dataset).expanduser(), task)]
    if kind == "border-qa":
        return [_border_qa_part(task)]
    if kind == "squad":
        return [_hub_squad_part(task, load_hub_squad, environ)]
    if kind == "use-case":
        part = _use_case_part(label, task, request.limit or DEFAULT_TRAIN_COUNT, skipped=skipped)
        if part is None:
            raise UserError(f"{skipped[0]['reason']}. Train on another use case, {BUILTIN_NAME} or a file of yours")
        return [part]
    count = min(request.limit or DEFAULT_TRAIN_COUNT, DEFAULT_TRAIN_COUNT)
    parts = [_border_qa_part(task)]
    for name in USE_CASES:
        part = _use_case_part(name, task, count, skipped=skipped)
        if part is not None:
            parts.append(part)
    return parts


def _source_card(part: _Part, train: Sequence[Record], validation: Sequence[Record]) -> dict[str, Any]:
    return {
        "name": part.source,
        "train": sum(record["_source"] == part.source for record in train),
        "validation": sum(record["_source"] == part.source for record in validation),
        **part.facts,
    }


# ---- the request ----------------------------------------------------------------------------------------------


def _check_request(request: DatasetRequest) -> TrainTask:
    if request.task not in TRAIN_TASKS:
        raise UserError(f"unknown training task '{request.task}'; choose one of {', '.join(TRAIN_TASKS)}")
    if request.limit is not None and request.limit < 1:
        raise UserError(f"--limit must be at least 1 (got {request.limit}); leave it out to train on every record")
    if request.validation_limit is not None and request.validation_limit < 1:
        raise UserError(
            f"--validation-limit must be at least 1 (got {request.validation_limit}); leave it out to keep them all"
        )
    return request.task


def _resolve(dataset: str) -> tuple[str, str]:
    """(kind, name): ``border-qa``, ``squad``, ``use-case``, ``border`` or ``file`` (the name is the path)."""
    name = dataset.strip().lower()
    if name in (BUILTIN_NAME, HF_SQUAD_NAME, BORDER_NAME):
        return name, name
    if name in USE_CASES:
        return "use-case", name
    path = Path(dataset).expanduser()
    if path.is_file():
        return "file", dataset
    names = [BUILTIN_NAME, HF_SQUAD_NAME, BORDER_NAME, *USE_CASES]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    what = "a folder, not a file" if path.is_dir() else "not a file that exists"
    raise UserError(
        f"dataset '{dataset}' is neither a known dataset ({', '.join(names)}) nor a data file ({what}); "
        f"{hint}pass one of them or the path of a JSON/JSONL file"
    )


def _check_pairing(kind: str, label: str, task: TrainTask) -> None:
    if kind == "file" or (kind in ("border-qa", "squad") and task in ("sft", "qa")):
        return
    if kind == "use-case" and (task == "sft" or (label == ENTITY_USE_CASE and task in ("ner", "classify"))):
        return
    if kind == BORDER_NAME and task == "sft":
        return
    if kind in ("border-qa", "squad"):
        trains = f"{label} trains decoders (sft) and encoders (qa)"
    elif label == ENTITY_USE_CASE:
        trains = f"{label} trains decoders (sft) and encoders (ner, classify)"
    elif kind == "use-case":
        trains = f"{label} trains decoders (sft)"
    else:
        trains = f"{label} (border-qa and every use case) trains decoders (sft) only"
    raise UserError(
        f"dataset '{label}' cannot train {task}: {trains}; {task} trains on {_SUPPORTED[task]}. Encoders train qa "
        f"on {BUILTIN_NAME}, {HF_SQUAD_NAME} or a SQuAD file, and ner or classify on {ENTITY_USE_CASE}"
    )


# ---- sources --------------------------------------------------------------------------------------------------


def _qa_part(
    source: str, task: TrainTask, train: Sequence[Example], validation: Sequence[Example], facts: dict[str, Any]
) -> _Part:
    """A SQuAD-format source: sft pairs (task prompt, first reference) or extractive QA records."""
    prompt_task = qa_task(source, [*train, *validation])

    def record(example: Example) -> Record | None:
        if task == "qa":
            return records_of.qa_record(example)
        return records_of.sft_record(example.id, prompt_task.prompt(example), gold_response(source, example), source)

    part = _Part(source, [], [], make_task=lambda examples: qa_task(source, examples), metric="f1", facts=facts)
    missing = 0
    for example in train:
        built = record(example)
        missing += built is None
        if built is not None:
            part.train.append(built)
    for example in hash_order(validation, lambda e: _key(source, e.id)):
        built = record(example)
        missing += built is None
        if built is not None:
            part.validation.append(built)
            part.examples[example.id] = example
    if missing:
        facts["dropped_answer_not_in_context"] = missing
    return part


def _border_qa_part(task: TrainTask) -> _Part:
    examples = load_builtin_border_qa()
    train, validation = split_by_group(examples, lambda e: e.context or "", BORDER_QA_VALIDATION_SHARE)
    paragraphs = {e.context for e in validation}
    facts = {
        "split": f"by paragraph: paragraphs ordered by the sha256 of their normalised context; whole paragraphs "
        f"held out in that order until validation holds {BORDER_QA_VALIDATION_SHARE:.0%} of the questions "
        f"({len(paragraphs)} of {len({e.context for e in examples})} paragraphs held out); no context is in both",
    }
    return _qa_part(BUILTIN_NAME, task, train, validation, facts)


def _hub_squad_part(task: TrainTask, loader: HubSquadLoader | None, environ: Mapping[str, str]) -> _Part:
    if loader is None:
        flags = [
            name
            for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
            if environ.get(name, "").lower() in _OFFLINE_VALUES
        ]
        if flags:
            raise UserError(
                f"--dataset squad downloads SQuAD v1.1 from the Hugging Face hub and needs a network ({flags[0]} is "
                f"set); offline, use --dataset {BUILTIN_NAME} or --dataset PATH (a SQuAD JSON/JSONL file)"
            )

    train, validation = (loader or _load_hub_squad)()
    facts = {"split": "SQuAD v1.1 (rajpurkar/squad): its train split for training, its validation split for validation"}
    return _qa_part(HF_SQUAD_NAME, task, train, validation, facts)


def _load_hub_squad() -> tuple[Sequence[Example], Sequence[Example]]:
    return load_hf_squad("train"), load_hf_squad("validation")


def _use_case_part(name: str, task: TrainTask, count: int, *, skipped: list[dict[str, str]]) -> _Part | None:
    """A use case's generated split, or ``None`` with a note in ``skipped`` when nothing disjoint is left."""
    split = generate_use_case_split(name, count, DEFAULT_VALIDATION_COUNT)
    if not split.train:
        reason = split.shortfall()
        skipped.append({"source": name, "reason": reason})
        return None
    validation = hash_order(split.validation, lambda e: _key(name, e.id))
    if task == "sft":
        prompt_task = use_case_task(name, [*split.train, *validation])

        def record(example: Example) -> Record:
            return records_of.sft_record(example.id, prompt_task.prompt(example), gold_response(name, example), name)

        make_task: Callable[[Sequence[Example]], Task] = lambda examples: use_case_task(name, examples)  # noqa: E731
        metric = prompt_task.metric_names[0]
    elif task == "ner":
        record, make_task, metric = records_of.ner_record, lambda e: use_case_task(name, e), "entity_f1"
    else:
        record, make_task, metric = records_of.classify_record, threat_label_task, "threat"
    return _Part(
        name,
        [record(example) for example in split.train],
        [record(example) for example in validation],
        examples={example.id: example for example in validation},
        make_task=make_task,
        metric=metric,
        facts=split.describe(),
    )


def _file_part(path: Path, task: TrainTask) -> _Part:
    source = path.stem
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        raise UserError(f"{path}: expected a .json (SQuAD v1.1) or .jsonl file; convert it or rename it")
    share = f"{FILE_VALIDATION_SHARE:.0%}"
    if task in ("ner", "classify") or (task == "sft" and suffix == ".jsonl" and _first_has(path, "prompt")):
        records = records_of.load_record_file(path, task)
        train, validation = split_by_group(records, records_of.group_text, FILE_VALIDATION_SHARE)
        grouped_by = "prompt" if task == "sft" else "text"
        rule = f"records grouped by their {grouped_by}; groups ordered by sha256 and held out whole in that order"
        facts = {"split": f"{rule} until validation holds {share} of the records"}
        ordered = hash_order(validation, lambda r: _key(source, str(r["id"])))
        return _Part(source, list(train), ordered, facts=facts)
    examples = load_squad_file(path)
    train_examples, validation_examples = split_by_group(
        examples, lambda e: e.context or e.question, FILE_VALIDATION_SHARE
    )
    rule = "by context: contexts ordered by sha256 and held out whole in that order"
    facts = {"split": f"{rule} until validation holds {share} of the questions; no context is in both"}
    return _qa_part(source, task, train_examples, validation_examples, facts)


def _first_has(path: Path, key: str) -> bool:
    """Whether the first non-blank line of a JSONL file is an object with ``key``."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                if line.strip():
                    value = json.loads(line)
                    return isinstance(value, dict) and key in value
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return False


# ---- assembling and writing -----------------------------------------------------------------------------------


def _key(source: str, record_id: str) -> str:
    return f"{source}\n{record_id}"


def _limited(parts: Sequence[_Part], request: DatasetRequest) -> tuple[list[Record], list[Record]]:
    """Training records shuffled with the seed and cut to the limit; validation in hash order, cut likewise."""
    train = [{**record, "_source": part.source} for part in parts for record in part.train]
    random.Random(request.seed).shuffle(train)
    validation = [{**record, "_source": part.source} for part in parts for record in part.validation]
    validation = hash_order(validation, lambda r: _key(r["_source"], str(r["id"])))
    return train[: request.limit], validation[: request.validation_limit]


def _validation_sets(parts: Sequence[_Part], validation: Sequence[Record]) -> tuple[ValidationSet, ...]:
    sets: list[ValidationSet] = []
    for part in parts:
        if part.make_task is None:
            continue
        chosen = tuple(part.examples[str(r["id"])] for r in validation if r["_source"] == part.source)
        if chosen:
            sets.append(ValidationSet(task=part.make_task(chosen), examples=chosen, metric=part.metric))
    return tuple(sets)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "dataset"
