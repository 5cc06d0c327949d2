"""Builds the document-verification data file from a fixed seed, with real ICAO 9303 machine-readable zones.

Passports (TD3), identity cards (TD1) and visas (MRV-A, MRV-B) are made with the ``mrz`` package's code
generators; names, numbers and dates come from ``faker`` (seeded, one locale per country); nationality and
issuing-state codes are ISO 3166 alpha-3 codes from ``pycountry`` in their ICAO form (``D`` for Germany), each
accepted by ``mrz``'s checker. About 40% of the documents are valid; each of the others carries exactly one
defect. Running the module rewrites the shipped file byte for byte::

    python -m slm_eval.tasks.border.build_document_data
"""

from __future__ import annotations

import random
import string
import sys
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import pycountry
from faker import Faker
from mrz.base.countries_ops import code_list, is_code  # type: ignore[import-untyped, unused-ignore]
from mrz.base.functions import hash_string, transliterate  # type: ignore[import-untyped, unused-ignore]
from mrz.generator.mrva import MRVACodeGenerator  # type: ignore[import-untyped, unused-ignore]
from mrz.generator.mrvb import MRVBCodeGenerator  # type: ignore[import-untyped, unused-ignore]
from mrz.generator.td1 import TD1CodeGenerator  # type: ignore[import-untyped, unused-ignore]
from mrz.generator.td3 import TD3CodeGenerator, dictionary  # type: ignore[import-untyped, unused-ignore]

from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, write_examples
from slm_eval.tasks.border.document_verification import DATA_FILE, DEFECTS, DOCUMENT_TYPES, reference_answer

SEED = 9303
VALID_COUNT = 32
PER_DEFECT = 8
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# ISO 3166 alpha-3 code -> (faker locale, mrz transliteration dictionary name); ICAO writes DEU as D.
COUNTRIES: dict[str, tuple[str, str]] = {
    "FRA": ("fr_FR", "latin_based"),
    "DEU": ("de_DE", "latin_based"),
    "ITA": ("it_IT", "latin_based"),
    "ESP": ("es_ES", "latin_based"),
    "NLD": ("nl_NL", "latin_based"),
    "BEL": ("nl_BE", "latin_based"),
    "AUT": ("de_AT", "latin_based"),
    "POL": ("pl_PL", "latin_based"),
    "CZE": ("cs_CZ", "latin_based"),
    "PRT": ("pt_PT", "latin_based"),
    "SWE": ("sv_SE", "latin_based"),
    "FIN": ("fi_FI", "latin_based"),
    "ROU": ("ro_RO", "latin_based"),
    "HRV": ("hr_HR", "latin_based"),
    "GRC": ("el_GR", "greek"),
    "IRL": ("en_IE", "latin_based"),
    "GBR": ("en_GB", "latin_based"),
    "USA": ("en_US", "latin_based"),
    "CAN": ("en_CA", "latin_based"),
    "AUS": ("en_AU", "latin_based"),
    "UKR": ("uk_UA", "cyrillic_ukrainian"),
    "RUS": ("ru_RU", "cyrillic"),
    "TUR": ("tr_TR", "latin_based"),
    "IND": ("en_IN", "latin_based"),
    "PAK": ("en_PK", "latin_based"),
    "NGA": ("en_NG", "latin_based"),
    "KEN": ("en_KE", "latin_based"),
    "PHL": ("en_PH", "latin_based"),
    "VNM": ("vi_VN", "latin_based"),
    "IDN": ("id_ID", "latin_based"),
    "BRA": ("pt_BR", "latin_based"),
    "MEX": ("es_MX", "latin_based"),
    "ARG": ("es_AR", "latin_based"),
    "COL": ("es_CO", "latin_based"),
    "ALB": ("sq_AL", "latin_based"),
}
ID_CARD_STATES = ("FRA", "DEU", "ITA", "ESP", "NLD", "BEL", "AUT", "POL", "CZE", "PRT", "SWE", "FIN", "ROU", "HRV")
VISA_STATES = ("FRA", "DEU", "ITA", "ESP", "NLD", "BEL", "AUT", "POL", "GBR", "USA", "CAN", "IRL")
SCHENGEN = frozenset({"FRA", "DEU", "ITA", "ESP", "NLD", "BEL", "AUT", "POL", "CZE", "PRT", "SWE", "FIN", "GRC"})
VISA_NATIONALITIES = ("IND", "PAK", "NGA", "KEN", "PHL", "VNM", "IDN", "TUR", "UKR", "RUS", "ALB", "COL", "BRA")
# Plausible wrong codes (sports-federation style) and random triples; each is checked to be no real code.
FAKE_CODES = ("GER", "SUI", "NED", "DEN", "POR", "CRO", "GRE", "RSA", "UAE", "ENG", "RUM", "PHI", "NGR", "ALG")
KIND_NAME_FIELD = {"TD3": 39, "MRVA": 39, "TD1": 30, "MRVB": 31}
KIND_TITLE = {"TD3": "PASSPORT", "TD1": "IDENTITY CARD", "MRVA": "VISA", "MRVB": "VISA"}
# (line index, character index) of each check digit: document number, birth date, expiry date, composite.
CHECK_DIGITS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "TD3": (("document number", 1, 9), ("date of birth", 1, 19), ("date of expiry", 1, 27), ("composite", 1, 43)),
    "TD1": (("document number", 0, 14), ("date of birth", 1, 6), ("date of expiry", 1, 14), ("composite", 1, 29)),
    "MRVA": (("document number", 1, 9), ("date of birth", 1, 19), ("date of expiry", 1, 27)),
    "MRVB": (("document number", 1, 9), ("date of birth", 1, 19), ("date of expiry", 1, 27)),
}

# The slices the composite check digit covers (line index, start, end), for the types that have one.
COMPOSITE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "TD3": ((1, 0, 10), (1, 13, 20), (1, 21, 43)),
    "TD1": ((0, 5, 30), (1, 0, 7), (1, 8, 15), (1, 18, 29)),
}


@dataclass(frozen=True)
class Document:
    """One travel document's data; both zones are drawn from it.

    Attributes:
        kind: ``TD3``, ``TD1``, ``MRVA`` or ``MRVB``.
        code: the document code in the MRZ (``P``, ``I``, ``ID``, ``V``, ``VC``).
        issuer: the issuing state's ICAO code.
        nationality: the holder's ICAO nationality code.
        surname: the primary identifier, uppercase ASCII words separated by spaces.
        given_names: the secondary identifier, same form.
        sex: ``M``, ``F`` or ``X``.
        birth: the date of birth.
        expiry: the date of expiry.
        number: the document number (8 or 9 characters).
        optional: optional personal data in the MRZ (may be empty).
    """

    kind: str
    code: str
    issuer: str
    nationality: str
    surname: str
    given_names: str
    sex: str
    birth: date
    expiry: date
    number: str
    optional: str


def icao_code(alpha_3: str) -> str:
    """The ICAO form of an ISO 3166 alpha-3 code, checked against pycountry and mrz."""
    if pycountry.countries.get(alpha_3=alpha_3) is None:
        raise ValueError(f"{alpha_3} is not an ISO 3166 alpha-3 code")
    code = "D" if alpha_3 == "DEU" else alpha_3
    if not is_code(code):
        raise ValueError(f"mrz does not accept the country code {code}")
    return code


def known_codes() -> frozenset[str]:
    """Every code a checker should accept or that names a real or former country."""
    codes = {c.alpha_3 for c in pycountry.countries} | {c.alpha_3 for c in pycountry.historic_countries}
    return frozenset(codes | {str(code) for code in code_list()})


def mrz_lines(document: Document, *, force: bool = False) -> list[str]:
    """The document's MRZ lines from mrz's generator; ``force`` lets an unknown country code through."""
    sex = "<" if document.sex == "X" else document.sex
    birth, expiry = document.birth.strftime("%y%m%d"), document.expiry.strftime("%y%m%d")
    if document.kind == "TD1":
        generator = TD1CodeGenerator(
            document.code, document.issuer, document.number, birth, sex, expiry, document.nationality,
            document.surname, document.given_names, optional_data1=document.optional, force=force,
        )  # fmt: skip
    else:
        make = {"TD3": TD3CodeGenerator, "MRVA": MRVACodeGenerator, "MRVB": MRVBCodeGenerator}[document.kind]
        generator = make(
            document.code, document.issuer, document.surname, document.given_names, document.number,
            document.nationality, birth, sex, expiry, document.optional, force=force,
        )  # fmt: skip
    return str(generator).split("\n")


def composite_digit(kind: str, lines: list[str]) -> str:
    """The composite check digit of a TD3 or TD1 MRZ (the last character of line 2)."""
    return str(hash_string("".join(lines[row][start:end] for row, start, end in COMPOSITE[kind])))


def printed(day: date) -> str:
    """A date as printed in the visual zone, e.g. ``12 MAR 1985``."""
    return f"{day.day:02d} {MONTHS[day.month - 1]} {day.year}"


def question_text(document: Document, inspection: date, lines: list[str]) -> str:
    """The input a reader device produces: inspection date, visual-zone fields, then the MRZ lines."""
    fields = [
        f"Inspection date: {inspection.isoformat()}",
        "Visual zone:",
        f"Document type: {KIND_TITLE[document.kind]}",
        f"Issuing state: {document.issuer}",
        f"Surname: {document.surname}",
        f"Given names: {document.given_names}",
        f"Nationality: {document.nationality}",
        f"Date of birth: {printed(document.birth)}",
        f"Sex: {document.sex}",
        f"Document number: {document.number}",
        f"Date of expiry: {printed(document.expiry)}",
        "MRZ:",
    ]
    return "\n".join(fields + lines)


class Builder:
    """Draws documents and defects from one seeded random stream and one seeded Faker per locale."""

    def __init__(self, seed: int) -> None:
        """Seeds the random stream; Faker instances are seeded from it on first use."""
        self.rng = random.Random(seed)
        self._fakers: dict[str, Faker] = {}
        self.line_length_count = 0
        known = known_codes()
        triples = ("".join(t) for t in _letter_triples(self.rng, 40))
        self._unknown = sorted(set(FAKE_CODES) - known) + [t for t in triples if t not in known and t[0] != "X"][:10]

    def faker(self, locale: str) -> Faker:
        """The seeded Faker of a locale."""
        if locale not in self._fakers:
            fake = Faker(locale)
            fake.seed_instance(self.rng.randrange(2**31))
            self._fakers[locale] = fake
        return self._fakers[locale]

    def name(self, alpha_3: str, sex: str, limit: int) -> tuple[str, str]:
        """A (surname, given names) pair of the country's locale that fits an MRZ name field of ``limit``."""
        locale, script = COUNTRIES[alpha_3]
        fake = self.faker(locale)
        table = getattr(dictionary, script)()
        female = sex == "F" or (sex == "X" and self.rng.random() < 0.5)
        while True:
            surname = fake.last_name_female() if female else fake.last_name_male()
            first = [fake.first_name_female() if female else fake.first_name_male()]
            if self.rng.random() < 0.3:
                first.append(fake.first_name_female() if female else fake.first_name_male())
            latin = [transliterate_name(surname, table), transliterate_name(" ".join(first), table)]
            letters_only = all(part and set(part) <= set(string.ascii_uppercase + " ") for part in latin)
            if letters_only and len(latin[0]) + 2 + len(latin[1]) < limit and latin[0] != latin[1]:
                return latin[0], latin[1]

    def document(self, kind: str, inspection: date, *, expired: bool = False) -> Document:
        """A consistent document of ``kind``, valid on ``inspection`` unless ``expired``."""
        rng = self.rng
        if kind == "TD3":
            nationality = rng.choice(sorted(COUNTRIES))
            issuer, code = nationality, "P"
        elif kind == "TD1":
            nationality = rng.choice(ID_CARD_STATES)
            issuer, code = nationality, "ID" if nationality in {"FRA", "BEL", "NLD"} else "I"
        else:
            nationality, issuer = rng.choice(VISA_NATIONALITIES), rng.choice(VISA_STATES)
            code = "VC" if issuer in SCHENGEN else "V"
        sex = "X" if rng.random() < 0.04 else rng.choice("MF")
        surname, given = self.name(nationality, sex, KIND_NAME_FIELD[kind])
        adult = rng.random() < 0.9
        birth = (
            _random_day(rng, date(1948, 1, 1), date(2006, 12, 31))
            if adult
            else _random_day(rng, date(2011, 1, 1), date(2021, 12, 31))
        )
        visa = kind in {"MRVA", "MRVB"}
        if expired:
            days_back = rng.choice([rng.randint(1, 10), rng.randint(11, 200 if visa else 1500)])
            expiry = inspection - timedelta(days=days_back)
        else:
            days_ahead = rng.choice([rng.randint(1, 14), rng.randint(15, 300 if visa else 3400)])
            expiry = inspection + timedelta(days=days_ahead)
        fake = self.faker("en_US")
        pattern = rng.choice(["??#######", "#########", "?#######", "??######", "?##?####?"])
        number = fake.bothify(pattern, letters=string.ascii_uppercase)
        optional = ""
        if kind in {"TD3", "TD1"} and rng.random() < 0.3:
            optional = fake.numerify("#" * rng.choice([9, 11, 12]))
        return Document(
            kind, code, icao_code(issuer), icao_code(nationality), surname, given, sex, birth, expiry, number, optional
        )

    def unknown_code(self) -> str:
        """A three-letter code that is neither ISO 3166 alpha-3 nor an ICAO code."""
        return self.rng.choice(self._unknown)


def transliterate_name(text: str, table: dict[str, str]) -> str:
    """A name in MRZ letters (mrz's transliteration), words separated by single spaces."""
    return " ".join(str(transliterate(text, table, " ")).split())


def _letter_triples(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    letters = string.ascii_uppercase
    return [(rng.choice(letters), rng.choice(letters), rng.choice(letters)) for _ in range(count)]


def _random_day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, (last - first).days))


def _inject(builder: Builder, kind: str, defect: str | None, inspection: date) -> tuple[str, str]:
    """The question text of one document of ``kind`` with ``defect`` (or none), and a note on the defect."""
    rng = builder.rng
    document = builder.document(kind, inspection, expired=defect == "expired")
    lines = mrz_lines(document)
    viz = document
    note = "none"
    if defect == "expired":
        note = f"expired {(inspection - document.expiry).days} days before inspection"
    elif defect == "check_digit":
        field, row, column = rng.choice(CHECK_DIGITS[kind])
        old = lines[row][column]
        new = str((int(old) + rng.randint(1, 9)) % 10)
        lines[row] = lines[row][:column] + new + lines[row][column + 1 :]
        if field != "composite" and kind in COMPOSITE:
            lines[1] = lines[1][:-1] + composite_digit(kind, lines)
        note = f"{field} check digit {old} changed to {new}"
    elif defect == "name_mismatch":
        viz, note = _name_mismatch(builder, document)
    elif defect == "date_mismatch":
        viz, note = _date_mismatch(rng, document, inspection)
    elif defect == "unknown_country":
        code = builder.unknown_code()
        if kind in {"TD3", "TD1"}:
            document = replace(document, issuer=code, nationality=code)
            note = f"issuing state and nationality {code}"
        else:
            if rng.random() < 0.5:
                document, note = replace(document, issuer=code), f"issuing state {code}"
            else:
                document, note = replace(document, nationality=code), f"nationality {code}"
        viz = document
        lines = mrz_lines(document, force=True)
    elif defect == "line_length":
        builder.line_length_count += 1
        shorten = builder.line_length_count % 2 == 0
        row = rng.choice([i for i, line in enumerate(lines) if line.endswith("<<<") or not shorten])
        change = rng.randint(1, 3)
        lines[row] = lines[row][:-change] if shorten else lines[row] + "<" * change
        note = f"MRZ line {row + 1} {'short' if shorten else 'long'} by {change}"
    return question_text(viz, inspection, lines), note


def _name_mismatch(builder: Builder, document: Document) -> tuple[Document, str]:
    rng = builder.rng
    way = rng.choice(["letter", "given", "surname"])
    if way == "letter":
        surname = document.surname
        while surname == document.surname:
            index = rng.randrange(1, len(document.surname))
            if document.surname[index] == " ":
                continue
            letter = rng.choice(string.ascii_uppercase.replace(document.surname[index], ""))
            surname = document.surname[:index] + letter + document.surname[index + 1 :]
        return replace(document, surname=surname), "surname differs by one letter"
    other = document
    limit = KIND_NAME_FIELD[document.kind]
    country = next(alpha for alpha in COUNTRIES if icao_code(alpha) == document.nationality)
    while other.surname == document.surname or other.given_names == document.given_names:
        surname, given = builder.name(country, document.sex, limit)
        other = replace(other, surname=surname, given_names=given)
    if way == "given":
        return replace(document, given_names=other.given_names), "given names differ"
    return replace(document, surname=other.surname), "surname differs"


def _date_mismatch(rng: random.Random, document: Document, inspection: date) -> tuple[Document, str]:
    if rng.random() < 0.5:
        birth = document.birth
        while birth == document.birth or birth > inspection - timedelta(days=365):
            way = rng.choice(["day", "year", "swap"])
            if way == "day":
                birth = document.birth + timedelta(days=rng.choice([-1, 1]) * rng.randint(1, 20))
            elif way == "year":
                birth = document.birth.replace(year=document.birth.year + rng.choice([-10, -2, -1, 1, 2, 10]), day=1)
                birth = birth.replace(day=min(document.birth.day, 28))
            elif document.birth.day <= 12:
                birth = document.birth.replace(month=document.birth.day, day=document.birth.month)
        return replace(document, birth=birth), f"printed date of birth {birth.isoformat()}"
    expiry = document.expiry
    while expiry == document.expiry or expiry <= inspection:
        shift = rng.choice([365, 730, 1825, 30, -30, 3])
        expiry = document.expiry + timedelta(days=shift)
    return replace(document, expiry=expiry), f"printed date of expiry {expiry.isoformat()}"


def build_examples(seed: int = SEED) -> list[Example]:
    """Every example, shuffled with ``seed``: ``VALID_COUNT`` valid ones and ``PER_DEFECT`` of each defect."""
    builder = Builder(seed)
    rng = builder.rng
    plan: list[str | None] = [None] * VALID_COUNT + [d for d in DEFECTS for _ in range(PER_DEFECT)]
    examples: list[tuple[str, Example]] = []
    for position, defect in enumerate(plan):
        index = position - plan.index(defect)
        kind = DOCUMENT_TYPES[(index + (DEFECTS.index(defect) if defect else 0)) % len(DOCUMENT_TYPES)]
        inspection = _random_day(rng, date(2026, 1, 5), date(2026, 12, 18))
        question, note = _inject(builder, kind, defect, inspection)
        target = {"valid": defect is None, "defect": defect, "document_type": kind}
        example = Example(
            id="",
            question=question,
            references=(reference_answer(defect),),
            metadata={"document_type": kind, "defect": defect or "none", "detail": note},
            target=target,
        )
        examples.append((question, example))
    rng.shuffle(examples)
    return [replace(example, id=f"docver-{number:03d}") for number, (_, example) in enumerate(examples, start=1)]


def write_data(path: Path | None = None, seed: int = SEED) -> Path:
    """Writes the examples as JSONL to ``path`` (the shipped data file by default) and returns the path."""
    target = path or data_path(DATA_FILE)
    write_examples(target, build_examples(seed))
    return target


def main() -> None:
    """Rewrites the shipped data file and says where."""
    path = write_data()
    sys.stdout.write(f"wrote {path}\n")


if __name__ == "__main__":
    main()
