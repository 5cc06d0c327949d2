"""How training data is held out: fixed splits by context hash, and use-case training data kept off evaluation.

Three rules, each deterministic and independent of the training seed:

* :func:`split_by_group` holds out whole groups (a paragraph of border-qa or of a SQuAD file, a prompt or a text
  of a record file), so no context is shared between training and validation. Groups are ordered by the sha256
  of their normalised text and taken for validation in that order until they hold the wanted share of records.
* :func:`generate_use_case_split` builds a use case's training and validation examples with its own seeded
  generator, from seeds ``SEED + 1000``, ``SEED + 1001``, ... (the shipped evaluation file is ``SEED``), and drops
  every generated example that repeats an evaluation text (see :data:`USE_CASE_SOURCES`) or an earlier one.
* :func:`hash_order` puts validation examples in a stable order that mixes paragraphs and kinds, so a prefix
  (``--validation-limit``, a score limit) is a fair sample.
"""

from __future__ import annotations

import hashlib
import importlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from slm_eval.tasks.base import Example
from slm_eval.tasks.catalogue import load_use_case

T = TypeVar("T")

BORDER_QA_VALIDATION_SHARE = 0.25
FILE_VALIDATION_SHARE = 0.15
SEED_OFFSET = 1000
DEFAULT_TRAIN_COUNT = 200
DEFAULT_VALIDATION_COUNT = 40
MAX_ROUNDS = 20
STALE_ROUNDS = 3


def normalise(text: str | None) -> str:
    """Text as compared for overlap: NFKC, case-folded, whitespace collapsed (``None`` gives ``""``)."""
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(text: str) -> str:
    """The hex sha256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_order(items: Sequence[T], key: Callable[[T], str]) -> list[T]:
    """``items`` sorted by the sha256 of ``key(item)``: a stable order that does not follow the file's."""
    return sorted(items, key=lambda item: (text_hash(key(item)), key(item)))


def split_by_group(items: Sequence[T], group: Callable[[T], str], share: float) -> tuple[list[T], list[T]]:
    """Whole groups held out for validation until they hold ``share`` of the items.

    Groups are keyed by the normalised ``group(item)`` and visited in the order of that key's sha256; each one
    visited goes to validation while validation holds fewer than ``round(share * len(items))`` items (at least
    one). With two or more groups at least one stays for training. Items keep their order within each side.

    Returns:
        (training items, validation items); validation is empty when there is only one group.
    """
    keys = [normalise(group(item)) for item in items]
    distinct = sorted(set(keys), key=lambda key: (text_hash(key), key))
    if len(distinct) < 2:
        return list(items), []
    sizes = {key: keys.count(key) for key in distinct}
    wanted = max(1, round(share * len(items)))
    held: set[str] = set()
    count = 0
    for key in distinct[:-1]:
        if count >= wanted:
            break
        held.add(key)
        count += sizes[key]
    train = [item for item, key in zip(items, keys, strict=True) if key not in held]
    validation = [item for item, key in zip(items, keys, strict=True) if key in held]
    return train, validation


def question_key(example: Example) -> frozenset[str]:
    """The text that must not repeat: the normalised question and context together."""
    return frozenset({normalise(example.question) + "\n" + normalise(example.context)})


def phrase_key(example: Example) -> frozenset[str]:
    """Triage's texts: the source phrase and its reference translation, each on its own (either direction)."""
    reference = example.target.get("reference")
    texts = {normalise(example.question), *(normalise(text) for text in example.references)}
    if isinstance(reference, str):
        texts.add(normalise(reference))
    return frozenset(texts - {""})


@dataclass(frozen=True)
class UseCaseSource:
    """How one use case's training data is generated and kept off its evaluation set.

    Attributes:
        name: the use case, e.g. ``report-generation``.
        builder: the module whose ``build_examples(seed)`` generates examples and whose ``SEED`` made the shipped
            evaluation file.
        keys: the normalised texts of an example; a generated example sharing any of them with an evaluation
            example, or with an example kept before it, is dropped.
        rule: the rule in words, for the dataset card.
    """

    name: str
    builder: str
    keys: Callable[[Example], frozenset[str]]
    rule: str


_QUESTION_RULE = "generated examples whose normalised question and context equal an evaluation example's are dropped"
USE_CASE_SOURCES: dict[str, UseCaseSource] = {
    "document-verification": UseCaseSource(
        "document-verification", "slm_eval.tasks.border.build_document_data", question_key, _QUESTION_RULE
    ),
    "multilingual-triage": UseCaseSource(
        "multilingual-triage",
        "slm_eval.tasks.border.build_triage_data",
        phrase_key,
        "the phrase bank is finite: a generated example is dropped when its source phrase or its reference "
        "translation appears in the evaluation set as a source phrase or a reference, in either direction",
    ),
    "entity-threat-detection": UseCaseSource(
        "entity-threat-detection", "slm_eval.tasks.border.build_entity_data", question_key, _QUESTION_RULE
    ),
    "customs-help": UseCaseSource(
        "customs-help",
        "slm_eval.tasks.border.build_customs_data",
        question_key,
        _QUESTION_RULE + "; the questions reword the same rules, so many share a reference answer with evaluation",
    ),
    "report-generation": UseCaseSource(
        "report-generation", "slm_eval.tasks.border.build_report_data", question_key, _QUESTION_RULE
    ),
}


@dataclass(frozen=True)
class GeneratedSplit:
    """A use case's generated training and validation examples and how they were made.

    Attributes:
        name: the use case.
        train: training examples, in generation order (ids suffixed ``-g<seed>``).
        validation: validation examples, in generation order (the first ones kept).
        seeds: the generator seeds used, in order.
        dropped_evaluation: generated examples dropped because they repeat an evaluation text.
        dropped_repeat: generated examples dropped because they repeat a text kept before them.
        evaluation_count: the shipped evaluation examples compared against.
    """

    name: str
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    seeds: tuple[int, ...]
    dropped_evaluation: int
    dropped_repeat: int
    evaluation_count: int

    def describe(self) -> dict[str, Any]:
        """The split's facts for the dataset card."""
        source = USE_CASE_SOURCES[self.name]
        seeds = f"{self.seeds[0]}..{self.seeds[-1]}" if self.seeds else "none"
        return {
            "split": f"generated with {source.builder}.build_examples, seeds {seeds} (the evaluation file uses SEED, "
            f"training SEED + {SEED_OFFSET} onwards); {source.rule}; repeats of a kept example are dropped too; the "
            f"first {len(self.validation)} kept are validation, the rest training",
            "generator_seeds": list(self.seeds),
            "dropped_matching_evaluation": self.dropped_evaluation,
            "dropped_repeats": self.dropped_repeat,
            "evaluation_examples_compared": self.evaluation_count,
        }

    def shortfall(self) -> str:
        """Why no training example is left, in one sentence."""
        generated = self.dropped_evaluation + self.dropped_repeat + len(self.train) + len(self.validation)
        return (
            f"{self.name} has no training data disjoint from its evaluation set: of {generated} examples generated "
            f"with seeds {self.seeds[0]}..{self.seeds[-1]}, {self.dropped_evaluation} share text with an evaluation "
            f"example ({USE_CASE_SOURCES[self.name].rule})"
        )


def generate_use_case_split(
    name: str,
    train_count: int = DEFAULT_TRAIN_COUNT,
    validation_count: int = DEFAULT_VALIDATION_COUNT,
    *,
    max_rounds: int = MAX_ROUNDS,
) -> GeneratedSplit:
    """Generates ``validation_count`` then ``train_count`` examples of a use case, none repeating evaluation.

    Seeds run from the generator's ``SEED + SEED_OFFSET`` upwards; generation stops once enough are kept, after
    ``max_rounds`` seeds, or after :data:`STALE_ROUNDS` seeds in a row that add nothing (a finite bank is spent).
    The kept examples for a larger ``train_count`` start with those for a smaller one. When fewer than
    ``validation_count + train_count`` are kept, validation takes at most half of them.

    Args:
        name: a key of :data:`USE_CASE_SOURCES`.
        train_count: training examples wanted.
        validation_count: validation examples wanted (fixed, so that it never depends on ``train_count``).
        max_rounds: most generator seeds to try.
    """
    source = USE_CASE_SOURCES[name]
    module = importlib.import_module(source.builder)
    build: Callable[[int], list[Example]] = module.build_examples
    first_seed = int(module.SEED) + SEED_OFFSET
    evaluation = load_use_case(name).examples()
    blocked: set[str] = set()
    for example in evaluation:
        blocked |= source.keys(example)
    need = validation_count + train_count
    kept: list[Example] = []
    seen: set[str] = set()
    seeds: list[int] = []
    dropped_evaluation = dropped_repeat = stale = 0
    for seed in range(first_seed, first_seed + max_rounds):
        if len(kept) >= need or stale >= STALE_ROUNDS:
            break
        seeds.append(seed)
        added = 0
        for example in build(seed):
            if len(kept) >= need:
                break
            keys = source.keys(example)
            if keys & blocked:
                dropped_evaluation += 1
            elif keys & seen:
                dropped_repeat += 1
            else:
                seen |= keys
                kept.append(replace(example, id=f"{example.id}-g{seed}"))
                added += 1
        stale = 0 if added else stale + 1
    held = validation_count if len(kept) >= need else min(validation_count, len(kept) // 2)
    return GeneratedSplit(
        name=name,
        train=tuple(kept[held:]),
        validation=tuple(kept[:held]),
        seeds=tuple(seeds),
        dropped_evaluation=dropped_evaluation,
        dropped_repeat=dropped_repeat,
        evaluation_count=len(evaluation),
    )
