"""Builds the report-generation data: an officer's terse notes and the structured incident report they become.

Names, places, dates, document numbers and plates come from ``faker`` (seeded per locale); nationality codes are
checked against ISO 3166-1 alpha-3 in ``pycountry``; the note fragments, abbreviations and summary sentences are
this module's own templates. The same seed writes the same file, byte for byte::

    python -m slm_eval.tasks.border.build_report_data
"""

from __future__ import annotations

import datetime as dt
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycountry
from faker import Faker

from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, write_examples

SEED = 4105
DATA_FILE = "reports.jsonl"
PER_TYPE = 13
# fmt: off
INCIDENT_TYPES = (
    "undeclared_goods", "document_issue", "refusal_of_entry", "routine_admission", "cash_over_threshold",
    "vehicle_search",
)
# (faker locale, ISO 3166-1 alpha-3, demonym): travellers common at a European border, then visa-national origins.
NEAR_ORIGINS = (
    ("en_GB", "GBR", "British"), ("en_IE", "IRL", "Irish"), ("fr_FR", "FRA", "French"), ("de_DE", "DEU", "German"),
    ("es_ES", "ESP", "Spanish"), ("it_IT", "ITA", "Italian"), ("pl_PL", "POL", "Polish"), ("ro_RO", "ROU", "Romanian"),
    ("nl_NL", "NLD", "Dutch"), ("pt_PT", "PRT", "Portuguese"), ("sv_SE", "SWE", "Swedish"), ("cs_CZ", "CZE", "Czech"),
    ("hu_HU", "HUN", "Hungarian"), ("lt_LT", "LTU", "Lithuanian"), ("hr_HR", "HRV", "Croatian"),
    ("en_US", "USA", "American"),
)
FAR_ORIGINS = (
    ("tr_TR", "TUR", "Turkish"), ("en_IN", "IND", "Indian"), ("pt_BR", "BRA", "Brazilian"),
    ("en_PK", "PAK", "Pakistani"), ("en_NG", "NGA", "Nigerian"), ("az_AZ", "AZE", "Azerbaijani"),
    ("id_ID", "IDN", "Indonesian"), ("vi_VN", "VNM", "Vietnamese"), ("zu_ZA", "ZAF", "South African"),
    ("en_KE", "KEN", "Kenyan"),
)
# Not it_IT: its city list is a set, so its order (and the data) would change with the hash seed.
PLACE_LOCALES = ("de_DE", "es_ES", "pl_PL", "pt_PT", "sv_SE", "nl_NL", "hr_HR", "cs_CZ")
PLACES = {
    "air": ("{city} Airport T{n}", "{city} Airport arrivals", "{city} Intl Airport"),
    "sea": ("Port of {city}", "{city} ferry terminal"),
    "road": ("{city} road crossing", "{city} BCP", "{city} motorway crossing"),
    "rail": ("{city} rail terminal",),
}
NUMBER_PATTERNS = {
    "passport": ("#########", "??#######", "?########"), "id_card": ("???######", "##########", "??#####??"),
    "visa": ("V########", "#########"), "residence_permit": ("RP#######", "??#######"),
    "driving_licence": ("########", "??######?"),
}
DOC_WORDS = {
    "passport": ("pp", "ppt", "PP", "passport"), "id_card": ("IDC", "ID card", "nat ID"), "visa": ("visa", "Sch visa"),
    "residence_permit": ("RP", "res permit"), "driving_licence": ("DL", "driving lic"),
}
ROLE_WORDS = {
    "driver": ("drv", "driver", "DRV"), "passenger": ("pax", "passenger", "front pax"),
    "traveller": ("trav", "subj", "traveller"),
}
ACTION_WORDS = {
    "seized": ("seized", "szd", "{obj} seized"), "fined": ("fined", "fine issued", "penalty issued"),
    "detained": ("detained", "det'd", "held in detention"), "released": ("released", "rel'd", "released w/o charge"),
    "referred": ("ref to {agency}", "referred to {agency}", "passed to {agency}"),
    "refused_entry": ("refused entry", "entry refused", "refused leave to enter"),
    "admitted": ("admitted", "adm'd", "cleared and admitted"),
}
# (gold description, note spellings, gold unit or "", note unit spellings, lowest, highest)
GoodSpec = tuple[str, tuple[str, ...], str, tuple[str, ...], int, int]
GOODS: dict[str, tuple[GoodSpec, ...]] = {
    "tobacco": (("cigarettes", ("cig", "cigs", "cigarettes"), "cartons", ("ctn", "ctns", "cartons"), 3, 40),
                ("hand-rolling tobacco", ("HRT", "hand rolling tob", "rolling tobacco"), "kg", ("kg",), 2, 15)),
    "alcohol": (("vodka", ("vodka",), "litres", ("L", "ltr", "litres"), 6, 30),
                ("wine", ("wine",), "bottles", ("btl", "bottles"), 12, 60)),
    "food": (("meat products", ("meat prods", "meat products"), "kg", ("kg",), 2, 12),
             ("cheese", ("cheese",), "kg", ("kg",), 2, 8)),
    "counterfeit": (("counterfeit handbags", ("cntft handbags", "fake handbags"), "", ("",), 4, 25),
                    ("counterfeit trainers", ("cntft trainers", "fake trainers"), "pairs", ("prs", "pairs"), 5, 30)),
    "medicine": (("tramadol tablets", ("tramadol tabs", "tramadol"), "boxes", ("bx", "boxes"), 5, 40),),
    "drugs": (("cannabis", ("cannabis", "herbal cannabis"), "kg", ("kg",), 1, 20),),
    "weapon": (("lock knife", ("lock knife",), "", ("",), 1, 1), ("pepper spray", ("pepper spray",), "", ("",), 1, 2)),
}
ALLOWANCE_GOODS: tuple[GoodSpec, ...] = (
    ("wine", ("wine",), "bottles", ("btl", "bottles"), 2, 4),
    ("cigarettes", ("cigs", "cigarettes"), "cartons", ("ctn", "carton"), 1, 1),
    ("spirits", ("spirits",), "litres", ("L", "ltr"), 1, 1),
)
DATE_STYLES = ("d/m/yy", "dd/mm/yyyy", "dd.mm.yy", "ddMONyy", "d Mon yyyy", "yyyy-mm-dd", "yesterday", "after_midnight")
NOTE_STYLES = ("line", "labelled", "bullets", "terse")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DEFECTS = {  # note words, summary words, actions
    "expired": ("{doc} expired", "an expired {doc}", ("refused_entry",)),
    "damaged": ("{doc} data page damaged", "a damaged {doc}", ("admitted",)),
    "mismatch": ("name on visa differs from {doc}", "a visa in another name than the {doc}", ("referred", "released")),
    "counterfeit": ("{doc} suspected counterfeit, UV features absent", "a suspected counterfeit {doc}",
                    ("seized", "detained", "referred")),
    "impostor": ("subj does not match {doc} photo, poss impostor", "a {doc} that may belong to someone else",
                 ("seized", "detained", "referred")),
}
REASONS = (
    ("no valid visa", "holding no valid visa"), ("insufficient funds", "insufficient funds"),
    ("SIS alert entry ban", "an entry ban in SIS"), ("prev overstay", "a previous overstay"),
    ("no return ticket", "no return ticket"), ("purpose of visit not credible", "a purpose of visit not credible"),
)
FINDINGS = {
    "nil": (("admitted",), ("released",)), "tobacco": (("seized", "fined"), ("seized", "released")),
    "drugs": (("seized", "detained", "referred"),), "clandestines": (("detained", "referred"),),
    "weapon": (("seized", "fined"), ("seized", "referred")),
}
CLAUSES = {  # whose action, and its words in the summary
    "inspected": ("inspected", "inspected"), "seized": ("seized", "seized"), "fined": ("who", "fined"),
    "detained": ("who", "detained"), "released": ("who", "released"), "admitted": ("who", "admitted"),
    "referred": ("who", "referred to the authorities"), "refused_entry": ("who", "refused entry"),
}
# fmt: on


@dataclass
class Person:
    """Someone named in the notes, with what the report must say about them."""

    first: str
    last: str
    role: str
    code: str
    demonym: str
    nationality_stated: bool = True
    documents: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The full name as the report writes it."""
        return f"{self.first} {self.last}"


@dataclass
class Scenario:
    """One incident before it is written down: who, what, which actions, and the summary's words."""

    mode: str
    persons: list[Person]
    events: list[str]
    items: list[tuple[str, str | None]]
    actions: list[tuple[str, str]]
    lead: str
    who: str
    plural: bool = False
    objects: dict[str, str] = field(default_factory=dict)
    location: str = ""


class Generator:
    """Seeded sources of randomness: one ``random.Random`` and one Faker per locale."""

    def __init__(self, seed: int) -> None:
        """Seeds every source from ``seed``."""
        self.rng = random.Random(seed)
        locales = sorted({o[0] for o in NEAR_ORIGINS + FAR_ORIGINS} | set(PLACE_LOCALES))
        self.fakers: dict[str, Faker] = {}
        for offset, locale in enumerate(locales):
            self.fakers[locale] = Faker(locale)
            self.fakers[locale].seed_instance(seed + offset)
        for _, code, _ in NEAR_ORIGINS + FAR_ORIGINS:
            if pycountry.countries.get(alpha_3=code) is None:
                raise ValueError(f"{code} is not an ISO 3166-1 alpha-3 code")

    def person(self, role: str, far: bool = False, docs: tuple[str, ...] = ("passport",)) -> Person:
        """A person of a random origin with documents of the given types."""
        locale, code, demonym = self.rng.choice(FAR_ORIGINS if far else NEAR_ORIGINS)
        fake = self.fakers[locale]
        first = fake.first_name_female() if self.rng.random() < 0.45 else fake.first_name_male()
        person = Person(first, fake.last_name(), role, code, demonym, self.rng.random() < 0.85)
        person.documents = [(kind, self.number(kind)) for kind in docs]
        return person

    def number(self, kind: str) -> str:
        """A document number in one of the type's patterns."""
        pattern = self.rng.choice(NUMBER_PATTERNS[kind])
        return self.fakers["de_DE"].bothify(pattern, letters=string.ascii_uppercase)

    def place(self, mode: str) -> str:
        """A border crossing point of the given kind in a faker city."""
        city = self.fakers[self.rng.choice(PLACE_LOCALES)].city()
        return self.rng.choice(PLACES[mode]).format(city=city, n=self.rng.randint(1, 5))

    def goods(self, pools: tuple[str, ...], count: int) -> tuple[list[str], list[tuple[str, str | None]], str]:
        """Note phrases, gold items and summary words for ``count`` goods from distinct pools."""
        picked = [self.good(self.rng.choice(GOODS[pool])) for pool in self.rng.sample(pools, count)]
        return [p[0] for p in picked], [p[1] for p in picked], " and ".join(p[2] for p in picked)

    def good(self, spec: GoodSpec) -> tuple[str, tuple[str, str | None], str]:
        """One good: its note phrase, its gold item and its summary words."""
        description, spellings, unit, unit_spellings, low, high = spec
        amount = self.rng.randint(low, high)
        note_unit = self.rng.choice(unit_spellings)
        phrase = " ".join(p for p in (str(amount), note_unit, self.rng.choice(spellings)) if p)
        unit = unit[:-1] if amount == 1 and unit.endswith("s") else unit
        quantity = f"{amount} {unit}" if unit else str(amount)
        words = f"{quantity} of {description}" if unit else f"{quantity} {description}"
        return phrase, (description, quantity), words


def _actions(gen: Generator, names: list[str], obj: str = "goods", agency: str = "police") -> list[tuple[str, str]]:
    """Action labels with their note phrases; ``inspected`` phrases are given by the scenario."""
    return [(name, gen.rng.choice(ACTION_WORDS[name]).format(obj=obj, agency=agency)) for name in names]


def _undeclared_goods(gen: Generator) -> Scenario:
    mode = gen.rng.choice(("vehicle", "air", "sea"))
    role = "driver" if mode == "vehicle" else "traveller"
    subject = gen.person(role, docs=(gen.rng.choice(("passport", "id_card")),))
    persons = [subject]
    if mode == "vehicle" and gen.rng.random() < 0.4:
        persons.append(gen.person("passenger", docs=("passport",)))
    phrases, items, words = gen.goods(("tobacco", "alcohol", "food", "counterfeit", "medicine"), gen.rng.randint(1, 2))
    tail = gen.rng.choice(("undecl", "not declared", "nil declared"))
    search = "veh searched" if mode == "vehicle" else gen.rng.choice(("bags searched", "x-ray"))
    actions = [("inspected", search)] if gen.rng.random() < 0.6 else []
    names = ["seized"] + (["fined"] if gen.rng.random() < 0.55 else [])
    names += [gen.rng.choice(("released", "admitted"))] if gen.rng.random() < 0.6 else []
    actions += _actions(gen, names)
    return Scenario(
        mode, persons, [" + ".join(phrases) + f" {tail}"], items, actions,
        f"{subject.role.capitalize()} {subject.name} did not declare {words} {{at}}", f"the {subject.role}",
        objects={"inspected": "the vehicle" if mode == "vehicle" else "the luggage", "seized": "the goods"},
    )  # fmt: skip


def _document_issue(gen: Generator) -> Scenario:
    mode = gen.rng.choice(("air", "sea", "road", "rail"))
    defect = gen.rng.choice(sorted(DEFECTS))
    doc_type = "passport" if defect in ("mismatch", "impostor") else gen.rng.choice(("passport", "id_card"))
    docs = (doc_type, "visa") if defect == "mismatch" else (doc_type,)
    subject = gen.person("traveller", far=defect in ("mismatch", "impostor"), docs=docs)
    note_doc = gen.rng.choice(DOC_WORDS[doc_type])
    plain_doc = "passport" if doc_type == "passport" else "ID card"
    event, lead, names = DEFECTS[defect]
    actions = [("inspected", f"{note_doc} examined under UV")] if gen.rng.random() < 0.6 else []
    actions += _actions(gen, list(names), obj=note_doc, agency=gen.rng.choice(("police", "immigration", "NDFU")))
    return Scenario(
        mode, [subject], [event.format(doc=note_doc)], [], actions,
        f"Traveller {subject.name} presented {lead.format(doc=plain_doc)} {{at}}", "the traveller",
        objects={"inspected": f"the {plain_doc}", "seized": f"the {plain_doc}"},
    )  # fmt: skip


def _refusal_of_entry(gen: Generator) -> Scenario:
    mode = gen.rng.choice(("air", "air", "sea", "vehicle"))
    first_role, second_role = ("driver", "passenger") if mode == "vehicle" else ("traveller", "traveller")
    persons = [gen.person(first_role, far=True)]
    if gen.rng.random() < 0.35:
        persons.append(gen.person(second_role, far=True))
    note_reason, reason = gen.rng.choice(REASONS)
    names = ["refused_entry"] + (["detained"] if gen.rng.random() < 0.35 else [])
    names += ["referred"] if gen.rng.random() < 0.2 else []
    actions = [("inspected", "bags searched")] if gen.rng.random() < 0.3 else []
    actions += _actions(gen, names, agency="immigration")
    plural = len(persons) > 1
    who = " and ".join(f"{p.role} {p.name}" for p in persons) if plural else f"{first_role} {persons[0].name}"
    return Scenario(
        mode, persons, [note_reason], [], actions,
        f"{who[0].upper()}{who[1:]} did not meet entry conditions {{at}} because of {reason}",
        "the travellers" if plural else f"the {first_role}", plural, {"inspected": "the luggage"},
    )  # fmt: skip


def _routine_admission(gen: Generator) -> Scenario:
    mode = gen.rng.choice(("vehicle", "vehicle", "air", "rail", "sea"))
    if mode == "vehicle":
        persons = [gen.person("driver", docs=(gen.rng.choice(("passport", "id_card")),))]
        persons += [gen.person("passenger", docs=("passport",)) for _ in range(gen.rng.randint(0, 2))]
    else:
        docs = gen.rng.choice((("passport",), ("id_card",), ("passport", "residence_permit")))
        persons = [gen.person("traveller", far="residence_permit" in docs, docs=docs)]
    items: list[tuple[str, str | None]] = []
    events = []
    if gen.rng.random() < 0.4:
        phrase, item, _ = gen.good(gen.rng.choice(ALLOWANCE_GOODS))
        items.append(item)
        events.append(f"{phrase} decl, within allowance")
    search = "veh searched nil found" if mode == "vehicle" else "bags x-rayed nil"
    actions = [("inspected", search)] if gen.rng.random() < 0.4 else []
    actions += _actions(gen, ["admitted"])
    plural = len(persons) > 1
    lead = f"{persons[0].role.capitalize()} {persons[0].name}" + (f" and {len(persons) - 1} passenger(s)" * plural)
    lead += " presented valid documents {at}" + (" and declared goods within the allowance" if items else "")
    inspected = "the vehicle" if mode == "vehicle" else "the luggage"
    return Scenario(
        mode, persons, events, items, actions, lead,
        "all occupants" if plural else f"the {persons[0].role}", plural, {"inspected": inspected},
    )  # fmt: skip


def _cash_over_threshold(gen: Generator) -> Scenario:
    mode = gen.rng.choice(("air", "air", "vehicle", "sea"))
    subject = gen.person("driver" if mode == "vehicle" else "traveller", far=gen.rng.random() < 0.5)
    currency, symbol = gen.rng.choice((("EUR", "€"), ("EUR", "€"), ("USD", "$"), ("GBP", "£"), ("CHF", "CHF ")))
    amount = gen.rng.randrange(10_500, 80_000, 500)
    quantity = f"{currency} {amount:,}"
    forms = (quantity, f"{symbol}{amount:,}", f"{amount} {currency}", f"{amount / 1000:g}k {currency}")
    declared = gen.rng.random() < 0.25
    status = "decl, source not explained" if declared else gen.rng.choice(("undecl", "not declared"))
    event = f"{gen.rng.choice(forms)} cash {status}"
    search = gen.rng.choice(("bags searched", "x-ray", "body search"))
    actions = [("inspected", search)] if gen.rng.random() < 0.7 else []
    names = ["seized"] if gen.rng.random() < 0.6 else []
    names += ["fined"] if not declared and gen.rng.random() < 0.5 else []
    names += ["referred"] if declared or not names or gen.rng.random() < 0.3 else []
    names += [gen.rng.choice(("released", "admitted"))] if gen.rng.random() < 0.5 else []
    agency = gen.rng.choice(("FIU", "police", "customs investigation"))
    actions += _actions(gen, names, obj="cash", agency=agency)
    what = "declared cash of unexplained origin" if declared else "undeclared cash"
    return Scenario(
        mode, [subject], [event], [("cash", quantity)], actions,
        f"{subject.role.capitalize()} {subject.name} was carrying {quantity} in {what} {{at}}", f"the {subject.role}",
        objects={"inspected": "the luggage" if mode != "vehicle" else "the vehicle", "seized": "the cash"},
    )  # fmt: skip


def _vehicle_search(gen: Generator) -> Scenario:
    mode = gen.rng.choice(("road", "sea"))
    driver = gen.person("driver", docs=(gen.rng.choice(("passport", "id_card", "driving_licence")),))
    persons = [driver] + ([gen.person("passenger", docs=("passport",))] if gen.rng.random() < 0.35 else [])
    vehicle = gen.rng.choice(("car", "van", "HGV", "campervan"))
    plate = gen.fakers["pl_PL"].license_plate() if gen.rng.random() < 0.3 else gen.fakers["en_GB"].license_plate()
    finding = gen.rng.choice(sorted(FINDINGS))
    items: list[tuple[str, str | None]] = []
    events = [f"{vehicle} {plate} " + gen.rng.choice(("searched", "x-rayed", "full rummage"))]
    agency = "police"
    noun = ""
    if finding == "nil":
        events.append("nil found")
        found = "nothing"
    elif finding == "clandestines":
        hidden = [gen.person("other", far=True, docs=()) for _ in range(gen.rng.randint(1, 2))]
        persons += hidden
        listed = ", ".join(f"{p.first} {p.last.upper()}" + f" {p.code}" * p.nationality_stated for p in hidden)
        noun = "persons" if len(hidden) > 1 else "person"
        events.append(f"{len(hidden)} {noun} concealed in load, no docs: {listed}")
        found = f"{len(hidden)} concealed {noun}"
        agency = "immigration"
    else:
        phrases, items, found = gen.goods((finding,), 1)
        events.append(f"{phrases[0]} concealed " + gen.rng.choice(("in door panels", "under floor", "in spare wheel")))
    actions = [("inspected", ""), *_actions(gen, list(gen.rng.choice(FINDINGS[finding])), agency=agency)]
    return Scenario(
        mode, persons, events, items, actions,
        f"A search {{at}} of the {vehicle} {plate} driven by {driver.name} found {found}",
        f"the concealed {noun}" if noun else "the driver", noun == "persons",
        {"inspected": "the vehicle", "seized": "the goods"},
    )  # fmt: skip


# fmt: off
BUILDERS = {
    "undeclared_goods": _undeclared_goods, "document_issue": _document_issue, "refusal_of_entry": _refusal_of_entry,
    "routine_admission": _routine_admission, "cash_over_threshold": _cash_over_threshold,
    "vehicle_search": _vehicle_search,
}
# fmt: on


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _summary(scenario: Scenario) -> str:
    """One sentence: what was found or presented and where, then the actions in order, merged by subject."""
    subjects = {"who": scenario.who, "inspected": "the luggage", "seized": "the goods", **scenario.objects}
    groups: list[tuple[str, list[str]]] = []
    for name, _ in scenario.actions:
        key, words = CLAUSES[name]
        if groups and groups[-1][0] == subjects[key]:
            groups[-1][1].append(words)
        else:
            groups.append((subjects[key], [words]))
    plural = {scenario.who: scenario.plural, "the goods": True}
    clauses = [f"{who} {'were' if plural.get(who) else 'was'} {_and(words)}" for who, words in groups]
    return f"{scenario.lead.format(at='at ' + scenario.location)}; {_and(clauses)}."


def _date_text(day: dt.date, style: str, rng: random.Random) -> str:
    month = MONTHS[day.month - 1]
    forms = {"dd/mm/yyyy": f"{day:%d/%m/%Y}", "dd.mm.yy": f"{day:%d.%m.%y}", "yyyy-mm-dd": day.isoformat(),
             "ddMONyy": f"{day:%d}{month.upper()}{day:%y}", "d Mon yyyy": f"{day.day} {month} {day.year}"}  # fmt: skip
    return forms.get(style) or (f"{day.day}/{day.month}/{day:%y}" if rng.random() < 0.5 else f"{day:%d/%m/%y}")


def _person_text(person: Person, rng: random.Random, labelled: bool) -> str:
    role = rng.choice(ROLE_WORDS[person.role])
    forms = [f"{person.first} {person.last.upper()}", f"{person.last.upper()} {person.first}"]
    name = rng.choice([*forms, f"{person.last.upper()}, {person.first}"] if labelled else forms)
    nationality = ""
    if person.nationality_stated:
        nationality = rng.choice((person.code, f"({person.code})", f"nat {person.code}", f"{person.demonym} national"))
    docs = " ".join(f"{rng.choice(DOC_WORDS[kind])} {number}" for kind, number in person.documents)
    return " ".join(part for part in (role, name, nationality, docs) if part)


def _notes(gen: Generator, scenario: Scenario, when: tuple[dt.date, str | None, str], note_style: str) -> str:
    """The officer's notes for a scenario; ``when`` is the day, the clock time or ``None``, and the date style."""
    rng = gen.rng
    day, clock, date_style = when
    location = scenario.location
    time_text = "" if clock is None else rng.choice((clock.replace(":", ""), clock, f"{clock.replace(':', '')}hrs"))
    if date_style == "yesterday":
        written = _date_text(day + dt.timedelta(days=1), date_style, rng)
        header = f"rpt written {written}, re yday {time_text} {location}".replace("  ", " ")
    elif date_style == "after_midnight":
        started = _date_text(day - dt.timedelta(days=1), date_style, rng)
        header = f"night shift {started}, {time_text} after midnight, {location}"
    else:
        header = " ".join(p for p in (_date_text(day, date_style, rng), time_text, location) if p)
    labelled = note_style == "labelled"
    people = [_person_text(p, rng, labelled) for p in scenario.persons if p.role != "other"]
    if rng.random() < 0.2:
        officer = gen.person("officer", docs=())
        officer.nationality_stated = False
        scenario.persons.append(officer)
        people.append(f"reporting ofr {officer.first} {officer.last.upper()}")
    acts = [text for _, text in scenario.actions if text]
    if labelled:
        parts = [f"WHEN/WHERE: {header}", "SUBJ: " + "; ".join(people)]
        parts += ["DETAILS: " + ", ".join(scenario.events)] if scenario.events else []
        parts += ["ACTION: " + ", ".join(acts)] if acts else []
        notes = "\n".join(parts)
    elif note_style == "bullets":
        notes = "\n".join([header] + [f"- {line}" for line in people + scenario.events + acts])
    elif note_style == "terse":
        notes = " / ".join([header, *people, *scenario.events, *(act.lower() for act in acts)])
    else:
        notes = f"{header}. " + ", ".join(people + scenario.events + acts) + "."
    return notes


def _example(gen: Generator, kind: str, index: int) -> Example:
    scenario = BUILDERS[kind](gen)
    day = gen.fakers["en_GB"].date_between(dt.date(2025, 1, 1), dt.date(2026, 12, 31))
    date_style = gen.rng.choice(DATE_STYLES)
    note_style = gen.rng.choice(NOTE_STYLES)
    minute = gen.rng.choice(range(0, 60, 5))
    clock: str | None = f"{gen.rng.randint(0, 23):02d}:{minute:02d}"
    if date_style == "after_midnight":
        clock = f"{gen.rng.randint(0, 4):02d}:{minute:02d}"
    elif gen.rng.random() < 0.2:
        clock = None
    scenario.location = location = gen.place("road" if scenario.mode == "vehicle" else scenario.mode)
    notes = _notes(gen, scenario, (day, clock, date_style), note_style)
    report: dict[str, Any] = {
        "date": day.isoformat(),
        "time": clock,
        "location": location,
        "persons": [
            {"name": p.name, "role": p.role, "nationality": p.code if p.nationality_stated else None}
            for p in scenario.persons
        ],
        "documents": [{"type": kind, "number": number} for p in scenario.persons for kind, number in p.documents],
        "items": [{"description": d, "quantity": q} for d, q in scenario.items],
        "actions": [name for name, _ in scenario.actions],
        "summary": _summary(scenario),
    }
    metadata = {"incident_type": kind, "date_style": date_style, "note_style": note_style, "mode": scenario.mode}
    summary = report["summary"]
    return Example(f"report-{index:03d}", notes, (summary,), metadata=metadata, target={"report": report})


def build_examples(seed: int = SEED, per_type: int = PER_TYPE) -> list[Example]:
    """Every example, the incident types interleaved so any prefix is balanced."""
    gen = Generator(seed)
    kinds = [kind for _ in range(per_type) for kind in INCIDENT_TYPES]
    return [_example(gen, kind, index) for index, kind in enumerate(kinds, start=1)]


def write_data(path: Path | None = None, seed: int = SEED) -> int:
    """Writes the data file (the shipped one by default); returns how many examples were written."""
    return write_examples(path or data_path(DATA_FILE), build_examples(seed))


def main() -> None:
    """Rewrites the shipped data file and says where."""
    path = data_path(DATA_FILE)
    print(f"wrote {write_data(path)} examples to {path}")


if __name__ == "__main__":
    main()
