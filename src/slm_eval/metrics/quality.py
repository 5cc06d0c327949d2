"""Task quality: SQuAD exact match and token F1, label accuracy, and bootstrap confidence intervals.

EM and F1 follow the official SQuAD v1.1 evaluation script (``evaluate-v1.1.py``) exactly:
the same normalisation in the same order, the same token F1, the maximum over the references.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Bound on the number of resampled indices drawn at once, so large score lists stay small in memory.
_BOOTSTRAP_CHUNK_CELLS = 2_000_000


def normalize_answer(text: str) -> str:
    """Normalise an answer as the official SQuAD v1.1 script does.

    Lower case, remove ASCII punctuation, remove the articles ``a``, ``an`` and ``the`` as whole
    words, then collapse whitespace, in that order.

    Args:
        text: a prediction or a reference answer.

    Returns:
        The normalised text, e.g. ``"The  Eiffel Tower!"`` -> ``"eiffel tower"``.
    """
    lowered = text.lower()
    no_punctuation = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punctuation)
    return " ".join(no_articles.split())


def _check_references(references: Sequence[str]) -> None:
    if isinstance(references, str):
        raise TypeError("references must be a sequence of strings, not one string")
    if len(references) == 0:
        raise ValueError("at least one reference answer is needed to score a prediction")


def _exact_match_one(prediction: str, reference: str) -> float:
    return 1.0 if normalize_answer(prediction) == normalize_answer(reference) else 0.0


def _token_f1_one(prediction: str, reference: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    reference_tokens = normalize_answer(reference).split()
    common = Counter(prediction_tokens) & Counter(reference_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(reference_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """SQuAD exact match: 1.0 when the normalised prediction equals any normalised reference.

    Args:
        prediction: the model's answer.
        references: the accepted answers; at least one.

    Returns:
        1.0 or 0.0.

    Raises:
        ValueError: ``references`` is empty.
    """
    _check_references(references)
    return max(_exact_match_one(prediction, reference) for reference in references)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1: the best bag-of-tokens F1 of the prediction against any reference.

    Args:
        prediction: the model's answer.
        references: the accepted answers; at least one.

    Returns:
        A score in 0..1; 0.0 when the prediction shares no token with any reference.

    Raises:
        ValueError: ``references`` is empty.
    """
    _check_references(references)
    return max(_token_f1_one(prediction, reference) for reference in references)


def label_accuracy(predictions: Sequence[str], labels: Sequence[str]) -> float:
    """The share of predictions equal to their label, ignoring case and surrounding whitespace.

    Args:
        predictions: one predicted label per example.
        labels: the true labels, in the same order.

    Returns:
        Accuracy in 0..1.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels: they must pair up one to one")
    if len(labels) == 0:
        raise ValueError("accuracy of no predictions is undefined: give at least one")
    pairs = zip(predictions, labels, strict=True)
    correct = sum(1 for prediction, label in pairs if prediction.strip().lower() == label.strip().lower())
    return correct / len(labels)


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    Resamples ``values`` with replacement ``resamples`` times, takes each resample's mean, and
    returns the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means.

    Args:
        values: per-example scores.
        confidence: the interval's coverage, in (0, 1).
        resamples: how many bootstrap resamples to draw; at least 1.
        seed: seeds the resampling, so the same inputs give the same interval.

    Returns:
        ``(low, high)``; ``(v, v)`` for a single value.

    Raises:
        ValueError: ``values`` is empty, ``confidence`` is outside (0, 1) or ``resamples`` < 1.
    """
    if len(values) == 0:
        raise ValueError("a confidence interval needs at least one value")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    data = np.asarray(values, dtype=np.float64)
    if data.size == 1:
        only = float(data[0])
        return only, only
    rng = np.random.default_rng(seed)
    n = data.size
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows_per_chunk):
        stop = min(resamples, start + rows_per_chunk)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = data[indices].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


@dataclass(frozen=True)
class MeanWithCI:
    """A mean score with its bootstrap confidence interval.

    Attributes:
        mean: the mean of the values.
        low: the interval's lower bound.
        high: the interval's upper bound.
        n: how many values.
        confidence: the interval's coverage, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        """``{"mean", "low", "high", "n", "confidence"}``, the shape used in JSON outputs."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "confidence": self.confidence}


def summarize_scores(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> MeanWithCI:
    """The mean of per-example scores with a percentile bootstrap confidence interval.

    Args:
        values: per-example scores.
        confidence: the interval's coverage, in (0, 1).
        resamples: how many bootstrap resamples to draw.
        seed: seeds the resampling.

    Returns:
        The mean, interval and count.

    Raises:
        ValueError: ``values`` is empty, or ``confidence``/``resamples`` are out of range.
    """
    low, high = bootstrap_ci(values, confidence=confidence, resamples=resamples, seed=seed)
    mean = float(np.mean(np.asarray(values, dtype=np.float64)))
    # Floating-point rounding can put the mean a hair outside a degenerate interval (all values equal).
    tolerance = 1e-12 * max(1.0, abs(mean))
    if mean < low <= mean + tolerance:
        low = mean
    if mean - tolerance <= high < mean:
        high = mean
    return MeanWithCI(mean=mean, low=low, high=high, n=len(values), confidence=confidence)
