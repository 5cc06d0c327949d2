"""Seeded perturbations of task inputs, and the score drop they cause.

Each perturbation is a pure function ``(text, rate, rng) -> text``: the same text, rate and RNG state
give the same output. :func:`perturb` seeds the RNG from a stable hash of ``(seed, kind, key)``, so an
example (keyed by its id) gets the same perturbation in every process and on every machine.

Example:
    >>> perturb("Where do I declare cash?", "typos", rate=0.1, seed=0, key="q-17")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from slm_eval.errors import UserError
from slm_eval.tasks.base import Example

PerturbFn = Callable[[str, float, random.Random], str]

# Keys next to each letter on a US QWERTY keyboard (same row and the rows above and below).
QWERTY_NEIGHBOURS: Mapping[str, str] = {
    "q": "wa",
    "w": "qase",
    "e": "wsdr",
    "r": "edft",
    "t": "rfgy",
    "y": "tghu",
    "u": "yhji",
    "i": "ujko",
    "o": "iklp",
    "p": "ol",
    "a": "qwsz",
    "s": "awedxz",
    "d": "serfcx",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop",
    "z": "asx",
    "x": "zsdc",
    "c": "xdfv",
    "v": "cfgb",
    "b": "vghn",
    "n": "bhjm",
    "m": "njk",
}

# What OCR engines commonly read instead of each glyph or glyph pair. Pairs are matched first.
OCR_CONFUSIONS: Mapping[str, tuple[str, ...]] = {
    "rn": ("m",),
    "cl": ("d",),
    "vv": ("w",),
    "m": ("rn",),
    "d": ("cl",),
    "w": ("vv",),
    "O": ("0",),
    "0": ("O",),
    "o": ("0",),
    "l": ("1", "I"),
    "I": ("1", "l"),
    "1": ("l", "I"),
    "S": ("5",),
    "5": ("S",),
    "B": ("8",),
    "8": ("B",),
    "Z": ("2",),
    "2": ("Z",),
    "G": ("6",),
    "6": ("G",),
    "g": ("9",),
    "9": ("g",),
}
_OCR_PAIR_LENGTH = 2

# Latin letters and Cyrillic (or Greek) letters drawn identically in common fonts.
HOMOGLYPHS: Mapping[str, tuple[str, ...]] = {
    "a": ("\u0430",),  # Cyrillic a
    "c": ("\u0441",),  # Cyrillic es
    "e": ("\u0435",),  # Cyrillic ie
    "i": ("\u0456",),  # Cyrillic Byelorussian-Ukrainian i
    "j": ("\u0458",),  # Cyrillic je
    "o": ("\u043e", "\u03bf"),  # Cyrillic o, Greek omicron
    "p": ("\u0440",),  # Cyrillic er
    "s": ("\u0455",),  # Cyrillic dze
    "x": ("\u0445",),  # Cyrillic ha
    "y": ("\u0443",),  # Cyrillic u
    "A": ("\u0410", "\u0391"),  # Cyrillic A, Greek Alpha
    "B": ("\u0412", "\u0392"),  # Cyrillic Ve, Greek Beta
    "C": ("\u0421",),  # Cyrillic Es
    "E": ("\u0415", "\u0395"),  # Cyrillic Ie, Greek Epsilon
    "H": ("\u041d", "\u0397"),  # Cyrillic En, Greek Eta
    "I": ("\u0406", "\u0399"),  # Cyrillic I, Greek Iota
    "J": ("\u0408",),  # Cyrillic Je
    "K": ("\u041a", "\u039a"),  # Cyrillic Ka, Greek Kappa
    "M": ("\u041c", "\u039c"),  # Cyrillic Em, Greek Mu
    "N": ("\u039d",),  # Greek Nu
    "O": ("\u041e", "\u039f"),  # Cyrillic O, Greek Omicron
    "P": ("\u0420", "\u03a1"),  # Cyrillic Er, Greek Rho
    "S": ("\u0405",),  # Cyrillic Dze
    "T": ("\u0422", "\u03a4"),  # Cyrillic Te, Greek Tau
    "X": ("\u0425", "\u03a7"),  # Cyrillic Ha, Greek Chi
    "Y": ("\u04ae", "\u03a5"),  # Cyrillic Straight U, Greek Upsilon
    "Z": ("\u0396",),  # Greek Zeta
}

_WORD = re.compile(r"\S+")


def _neighbour(char: str, rng: random.Random) -> str:
    """A QWERTY neighbour of an ASCII letter, in the letter's case."""
    key = rng.choice(QWERTY_NEIGHBOURS[char.lower()])
    return key.upper() if char.isupper() else key


def _is_typo_eligible(char: str) -> bool:
    return char.lower() in QWERTY_NEIGHBOURS


def keyboard_typos(text: str, rate: float, rng: random.Random) -> str:
    """Keyboard slips: replace, insert, delete or transpose letters using QWERTY-neighbour keys.

    Each ASCII letter is hit with probability ``rate``; a hit is one of: replaced by a neighbouring
    key, followed by an extra neighbouring key, deleted, or swapped with the next letter. The text
    never becomes empty unless it was.

    Args:
        text: the input.
        rate: the probability that one letter is hit.
        rng: the source of randomness.

    Returns:
        The text with typos; unchanged when it has no ASCII letters.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if not _is_typo_eligible(char) or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        operation = rng.choice(("replace", "insert", "delete", "transpose"))
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if operation == "transpose" and nxt and _is_typo_eligible(nxt):
            out.extend((nxt, char))
            i += 2
            continue
        if operation == "insert":
            out.extend((char, _neighbour(char, rng)))
        elif operation == "delete":
            pass
        else:  # replace, or a transpose with no letter to swap with
            out.append(_neighbour(char, rng))
        i += 1
    result = "".join(out)
    if text and not result:
        # Everything was deleted: keep one slip instead, on the first letter.
        first = next(index for index, char in enumerate(text) if _is_typo_eligible(char))
        return text[:first] + _neighbour(text[first], rng) + text[first + 1 :]
    return result


def ocr_confusions(text: str, rate: float, rng: random.Random) -> str:
    """OCR misreads: O/0, l/1, I/1, S/5, B/8, Z/2, G/6, g/9, rn/m, cl/d, vv/w.

    The text is scanned left to right; at each glyph (or glyph pair, matched first) that OCR engines
    commonly confuse, a misread happens with probability ``rate``.

    Args:
        text: the input.
        rate: the probability that one eligible glyph or pair is misread.
        rng: the source of randomness.

    Returns:
        The misread text; unchanged when nothing in it is eligible.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        pair = text[i : i + _OCR_PAIR_LENGTH]
        unit = pair if len(pair) == _OCR_PAIR_LENGTH and pair in OCR_CONFUSIONS else text[i]
        choices = OCR_CONFUSIONS.get(unit)
        if choices is not None and rng.random() < rate:
            out.append(rng.choice(choices))
        else:
            out.append(unit)
        i += len(unit)
    return "".join(out)


def homoglyphs(text: str, rate: float, rng: random.Random) -> str:
    """Swap Latin letters for Cyrillic or Greek letters that look the same (a -> U+0430 and so on).

    The text reads the same to a person but not to a tokenizer.

    Args:
        text: the input.
        rate: the probability that one eligible letter is swapped.
        rng: the source of randomness.

    Returns:
        The text with look-alike letters; unchanged when it has none that have a homoglyph.
    """
    out: list[str] = []
    for char in text:
        choices = HOMOGLYPHS.get(char)
        if choices is not None and rng.random() < rate:
            out.append(rng.choice(choices))
        else:
            out.append(char)
    return "".join(out)


def _flips_case(char: str) -> bool:
    swapped = char.swapcase()
    return len(swapped) == 1 and swapped != char


def casing_and_whitespace(text: str, rate: float, rng: random.Random) -> str:
    """Casing and spacing noise: flip the case of letters, double or remove spaces.

    Each cased letter and each space is hit with probability ``rate``. A hit letter changes case;
    a hit space is doubled or removed (even odds).

    Args:
        text: the input.
        rate: the probability that one letter or space is hit.
        rng: the source of randomness.

    Returns:
        The noisy text; unchanged when it has no cased letters and no spaces.
    """
    out: list[str] = []
    for char in text:
        if char == " ":
            if rng.random() < rate:
                out.append("  " if rng.random() < 0.5 else "")
            else:
                out.append(char)
        elif _flips_case(char) and rng.random() < rate:
            out.append(char.swapcase())
        else:
            out.append(char)
    result = "".join(out)
    return result if result or not text else text


def dropped_words(text: str, rate: float, rng: random.Random) -> str:
    """Drop whole words, each with probability ``rate``; at least one word always stays.

    A dropped word takes the whitespace after it along; the remaining spacing is kept as it was.

    Args:
        text: the input.
        rate: the probability that one word is dropped.
        rng: the source of randomness.

    Returns:
        The text without the dropped words; unchanged when it has fewer than two words.
    """
    words = list(_WORD.finditer(text))
    if len(words) < 2:
        return text
    keep = [rng.random() >= rate for _ in words]
    if not any(keep):
        keep[rng.randrange(len(words))] = True
    if all(keep):
        return text
    kept = [index for index, flag in enumerate(keep) if flag]
    parts = [text[: words[0].start()]]
    for position, index in enumerate(kept):
        parts.append(words[index].group())
        is_last_kept = position == len(kept) - 1
        if is_last_kept:
            parts.append(text[words[-1].end() :])
        else:
            parts.append(text[words[index].end() : words[index + 1].start()])
    return "".join(parts)


@dataclass(frozen=True)
class Perturbation:
    """A named perturbation and what it does.

    Attributes:
        name: the name used with ``--perturbations`` and in results.
        description: one line for help texts and reports.
        apply: the function ``(text, rate, rng) -> text``.
    """

    name: str
    description: str
    apply: PerturbFn

    def __call__(self, text: str, rate: float, rng: random.Random) -> str:
        """Perturb ``text`` at ``rate`` with ``rng``."""
        return self.apply(text, rate, rng)


PERTURBATIONS: dict[str, Perturbation] = {
    perturbation.name: perturbation
    for perturbation in (
        Perturbation(
            "typos", "keyboard slips: QWERTY-neighbour replacements, insertions, deletions and swaps", keyboard_typos
        ),
        Perturbation("ocr", "OCR misreads such as O/0, l/1, I/1, S/5, B/8, rn/m, cl/d", ocr_confusions),
        Perturbation("homoglyphs", "Latin letters swapped for identical-looking Cyrillic or Greek ones", homoglyphs),
        Perturbation("casing_whitespace", "random case flips and doubled or removed spaces", casing_and_whitespace),
        Perturbation("dropped_words", "whole words dropped (never all of them)", dropped_words),
    )
}


def _check_rate(rate: float) -> None:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and 0.0 < rate <= 1.0):
        raise UserError(f"perturbation rate must be in (0, 1], got {rate!r}: give a share such as 0.1")


def _lookup(kind: str) -> Perturbation:
    try:
        return PERTURBATIONS[kind]
    except KeyError:
        known = ", ".join(sorted(PERTURBATIONS))
        raise UserError(f"unknown perturbation '{kind}': choose one of {known}") from None


def derive_seed(seed: int, kind: str, key: str) -> int:
    """A 64-bit RNG seed from a stable hash of ``(seed, kind, key)``, equal in every process."""
    digest = hashlib.sha256(f"{seed}\x1f{kind}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def perturb(text: str, kind: str, rate: float, seed: int, key: str) -> str:
    """Perturb ``text`` deterministically for ``(seed, kind, key)``.

    Args:
        text: the input.
        kind: a name in :data:`PERTURBATIONS`.
        rate: the perturbation's rate, in (0, 1].
        seed: the run's seed.
        key: what identifies the input (an example id), so each input gets its own noise.

    Returns:
        The perturbed text.

    Raises:
        UserError: ``kind`` is unknown or ``rate`` is outside (0, 1].
    """
    perturbation = _lookup(kind)
    _check_rate(rate)
    return perturbation(text, rate, random.Random(derive_seed(seed, kind, key)))


def perturb_example(example: Example, kind: str, rate: float, seed: int) -> Example:
    """A copy of ``example`` with its question perturbed; id, context and references unchanged.

    Args:
        example: the clean example.
        kind: a name in :data:`PERTURBATIONS`.
        rate: the perturbation's rate, in (0, 1].
        seed: the run's seed; the example's id is the key.

    Returns:
        The perturbed example.

    Raises:
        UserError: ``kind`` is unknown or ``rate`` is outside (0, 1].
    """
    return replace(example, question=perturb(example.question, kind, rate, seed, key=example.id))


@dataclass(frozen=True)
class RobustnessResult:
    """A task's score on clean inputs and on one perturbation of them.

    Attributes:
        perturbation: the perturbation's name.
        rate: the rate it was applied at.
        clean_score: the primary score on clean inputs.
        perturbed_score: the same score on perturbed inputs.
    """

    perturbation: str
    rate: float
    clean_score: float
    perturbed_score: float

    @property
    def drop(self) -> float:
        """``clean_score - perturbed_score``; positive when the perturbation hurt."""
        return self.clean_score - self.perturbed_score

    @property
    def relative_drop(self) -> float | None:
        """The drop as a share of the clean score; ``None`` when the clean score is 0."""
        return self.drop / self.clean_score if self.clean_score != 0 else None

    def to_dict(self) -> dict[str, object]:
        """Every field plus ``drop`` and ``relative_drop``, the shape used in JSON outputs."""
        return {
            "perturbation": self.perturbation,
            "rate": self.rate,
            "clean_score": self.clean_score,
            "perturbed_score": self.perturbed_score,
            "drop": self.drop,
            "relative_drop": self.relative_drop,
        }
