"""Builds ``entities.jsonl``: officers' incident notes with annotated entities and a threat label.

Every note comes from a hand-written template whose slots are filled from seeded reference data: names and
vehicle plates from ``faker`` (in the locale of the person's country), country names from ``pycountry``
(ISO 3166), document numbers, flights and amounts from seeded patterns. Each entity is recorded with the
character offset at which the slot was written, so its text is always the exact substring at that offset.

Rewrite the shipped file (byte-identical for the same seed and package versions)::

    python -m slm_eval.tasks.border.build_entity_data
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycountry
from faker import Faker

from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, write_examples

SEED = 20240404
PER_LABEL = 16
FILE_NAME = "entities.jsonl"

# (alpha-3, faker locale for names and plates, demonym, whether "citizen of <name>" reads without "the")
COUNTRIES: tuple[tuple[str, str, str, bool], ...] = (
    ("GBR", "en_GB", "British", False),
    ("DEU", "de_DE", "German", True),
    ("FRA", "fr_FR", "French", True),
    ("ESP", "es_ES", "Spanish", True),
    ("ITA", "it_IT", "Italian", True),
    ("POL", "pl_PL", "Polish", True),
    ("NLD", "nl_NL", "Dutch", False),
    ("PRT", "pt_PT", "Portuguese", True),
    ("ROU", "ro_RO", "Romanian", True),
    ("TUR", "tr_TR", "Turkish", True),
    ("CZE", "cs_CZ", "Czech", True),
    ("HRV", "hr_HR", "Croatian", True),
    ("BRA", "pt_BR", "Brazilian", True),
    ("MEX", "es_MX", "Mexican", True),
    ("IND", "en_IN", "Indian", True),
    ("HUN", "hu_HU", "Hungarian", True),
    ("SVK", "sk_SK", "Slovak", True),
    ("LTU", "lt_LT", "Lithuanian", True),
    ("FIN", "fi_FI", "Finnish", True),
    ("SWE", "sv_SE", "Swedish", True),
    ("NGA", "en_NG", "Nigerian", True),
    ("VNM", "vi_VN", "Vietnamese", True),
    ("MDA", "ro_RO", "Moldovan", True),
    ("IDN", "id_ID", "Indonesian", True),
)
AIRLINES = ("FR", "W6", "LH", "BA", "TK", "LO", "AF", "KL", "U2", "RO", "OS", "SK", "TP", "IB", "AZ", "EK")
VESSELS = (
    "MV Amber Tide", "MV Nordic Crest", "MS Baltic Pearl", "MV Sea Falcon", "MV Adriatic Star",
    "MS Northern Light", "MV Celtic Dawn", "MV Iberian Wave", "MS Aegean Spirit", "MV Grey Heron",
)  # fmt: skip
LOCATIONS = (
    "lane 3", "lane 7", "booth 12", "Terminal 2", "gate B14", "the freight shed", "Dover Eastern Docks",
    "Medyka crossing", "Algeciras port", "Narva crossing", "Helsinki West Harbour", "Frankfurt Airport T1",
)  # fmt: skip
DRUGS = ("cocaine", "cannabis resin", "heroin", "amphetamine paste", "herbal cannabis", "methamphetamine", "khat")
TOBACCO = (("cartons of", "cigarettes"), ("kg of", "hand-rolling tobacco"), ("boxes of", "cigars"))
ALCOHOL = ("vodka", "whisky", "spirits", "wine", "rum")
WILDLIFE = ("live tortoises", "ivory carvings", "pangolin scales", "coral pieces", "tins of caviar", "songbirds")
COUNTERFEIT = ("counterfeit handbags", "counterfeit watches", "counterfeit medicines", "fake designer trainers")
HANDGUNS = ("pistol", "revolver", "handgun")
BLADES = ("flick knife", "butterfly knife", "combat knife", "machete", "push dagger")
OTHER_WEAPONS = ("stun gun", "knuckle-duster", "telescopic baton", "pepper spray", "crossbow")
LONG_GUNS = ("hunting rifle", "shotgun", "bolt-action rifle")
AMMUNITION = (("rounds of", "ammunition"), ("", "shotgun cartridges"), ("rounds of", "9 mm ammunition"))
MEDICINES = ("methadone", "diazepam", "codeine tablets", "tramadol", "oxycodone")
BENIGN_GOODS = ("clothes and a laptop", "camping gear", "children's toys", "food for personal use", "tools")
CURRENCY_FORMS = ("EUR {n}", "€{n}", "{n} EUR", "USD {n}", "£{n}", "GBP {n}", "CHF {n}", "{n} euros")
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"

Segment = tuple[str, str | None]

# (key, threat, difficulty, template). Slots: {person} {person2} {nat_adj} {nat_country} {nat_code} {nat2_adj}
# {doc} {doc2} {plate} {flight} {vessel} {amount} {amount_small} {he} {He} {his} {time} {place} {count} and the
# item slots named in _item_slot.
TEMPLATES: tuple[tuple[str, str, str, str], ...] = (
    ("none-01", "none", "standard",
     "Pax {person}, {nat_adj} national, passport {doc}, arrived on {flight} at {time}. "
     "Purpose of visit tourism, return ticket seen. NTR."),
    ("none-08", "none", "hard",
     "Routine check of a coach at {place} at {time}, {count} passengers, all documents in order. Nothing to report."),
    ("none-02", "none", "standard",
     "Vehicle {plate} crossed at {place}; driver {person} ({nat_code}) presented ID card {doc}. "
     "Boot checked, {benign} only."),
    ("none-03", "none", "hard",
     "{person} declared {bottles} and {tobacco_small}, within the duty-free allowance. Released."),
    ("none-04", "none", "hard",
     "Traveller {person}, citizen of {nat_country}, lodged a cash declaration for {amount} before the check. "
     "Bank papers match the sum; no further action."),
    ("none-05", "none", "hard",
     "Hunter {person} declared a {long_gun} with European Firearms Pass {doc} on arrival from {vessel}. "
     "Pass valid, weapon unloaded and locked in its case."),
    ("none-06", "none", "hard",
     "Passport {doc} of {person} ({nat_adj}) is water-damaged; data page checked against the issuing "
     "database and confirmed genuine. Advised to renew."),
    ("none-07", "none", "hard",
     "{person} off {flight} carried {medicine} with a prescription in {his} own name; quantity fits a "
     "30-day course. Allowed through."),
    ("none-09", "none", "hard",
     "Unaccompanied minor off {flight} met by a parent, {person} ({nat_adj}); consent letter and birth "
     "certificate checked, relationship confirmed."),
    ("contraband-01", "contraband", "standard",
     "Search of vehicle {plate} found {drug} hidden in the spare wheel. Driver {person}, {nat_adj}, arrested."),
    ("contraband-02", "contraband", "standard",
     "{tobacco_large} found undeclared in the luggage of {person} off {flight}. Goods seized, penalty issued."),
    ("contraband-03", "contraband", "hard",
     "Passenger {person} from {vessel} said {he} had nothing to declare; {amount} in cash found sewn into "
     "a jacket lining. Cash detained."),
    ("contraband-04", "contraband", "standard",
     "X-ray of a parcel collected by {person} showed {wildlife} packed in socks; no CITES permit. "
     "Referred to the wildlife unit."),
    ("contraband-05", "contraband", "standard",
     "Lorry {plate}, driver {person} ({nat_code}), manifest says furniture; {spirits} found behind the load."),
    ("contraband-06", "contraband", "hard",
     "{person}, {nat_adj}, stated the suitcase held gifts for family. It contained {counterfeit} with "
     "invoices for {amount_small}."),
    ("weapon-01", "weapon", "standard",
     "During a search of {person} ({nat_adj}) at {place}, a loaded {handgun} was found in {his} waistband. "
     "Police called."),
    ("weapon-02", "weapon", "standard",
     "Checked bag of {person}, passenger on {flight}, contained {ammunition}, not declared."),
    ("weapon-03", "weapon", "standard",
     "Vehicle {plate} searched: a {blade} under the driver's seat and a {other_weapon} in the glovebox. "
     "Driver {person} detained."),
    ("weapon-04", "weapon", "hard",
     "{person} said the {long_gun} in {his} car was for hunting but holds no firearms permit. "
     "Vehicle {plate}, gun seized."),
    ("weapon-05", "weapon", "standard",
     "Crew member {person} of {vessel} tried to bring a {other_weapon} ashore hidden in a toolbox."),
    ("weapon-06", "weapon", "hard",
     "Traveller {person} ({nat_code}) had a {blade} inside a hollowed-out book; {he} said it was for "
     "self-defence."),
    ("fraud-01", "document_fraud", "standard",
     "Passport {doc} presented by {person} shows signs of photo substitution; laminate lifted at the edge. "
     "Holder claims {nat_adj} nationality."),
    ("fraud-02", "document_fraud", "standard",
     "MRZ of ID card {doc} gives a birth date that differs from the visual zone; holder {person}, "
     "{nat_adj}, arriving on {flight}."),
    ("fraud-03", "document_fraud", "hard",
     "{person} presented passport {doc} but does not resemble the photo and failed the biometric check. "
     "Suspected impostor."),
    ("fraud-04", "document_fraud", "standard",
     "Visa sticker {doc} in the passport of {person} ({nat_code}) shows no UV features and the number is "
     "not in the visa system."),
    ("fraud-05", "document_fraud", "hard",
     "{person}, a citizen of {nat_country}, presented ID card {doc}, which is recorded as stolen blank stock."),
    ("fraud-06", "document_fraud", "hard",
     "Two passports found in the bag of {person}: {doc} in {his} own name and {doc2} with {his} photo "
     "but another name."),
    ("trafficking-01", "trafficking_indicator", "standard",
     "Driver {person} of van {plate} held the passports of all {count} passengers, who could not say "
     "where they were going or who would meet them."),
    ("trafficking-02", "trafficking_indicator", "standard",
     "Minor travelling with {person} ({nat_adj}) off {flight}; adult not a relative, no parental consent "
     "letter, and their stories differ."),
    ("trafficking-03", "trafficking_indicator", "standard",
     "{count} young women on {flight} with one-way tickets bought by the same third party, {amount_small} "
     "in cash each and the same hotel address."),
    ("trafficking-04", "trafficking_indicator", "standard",
     "Lorry {plate} (driver {person}, {nat_code}): heartbeat detector alarm on the sealed trailer; "
     "{count} persons found behind pallets."),
    ("trafficking-05", "trafficking_indicator", "hard",
     "{person} says an agent who found {him} a job abroad keeps {his} passport {doc}; {he} owes {amount} "
     "for the journey."),
    ("trafficking-06", "trafficking_indicator", "hard",
     "Passenger {person} from {vessel} looked frightened and let companion {person2}, {nat2_adj}, answer "
     "every question; {he} did not know {his} employer's address."),
)  # fmt: skip


@dataclass
class _Context:
    """The seeded sources and the per-note choices that several slots share."""

    rng: random.Random
    fakers: dict[str, Faker]
    country: tuple[str, str, str, bool] = COUNTRIES[0]
    country2: tuple[str, str, str, bool] = COUNTRIES[1]
    female: bool = False
    cache: dict[str, list[Segment]] = field(default_factory=dict)


def _country_name(alpha_3: str) -> str:
    """The short English name of a country from ISO 3166 (``pycountry``), e.g. ``Moldova``."""
    country = pycountry.countries.get(alpha_3=alpha_3)
    if country is None:
        raise ValueError(f"unknown ISO 3166 alpha-3 code {alpha_3}")
    return str(getattr(country, "common_name", None) or country.name)


def _person(ctx: _Context, country: tuple[str, str, str, bool], female: bool) -> list[Segment]:
    fake = ctx.fakers[country[1]]
    if female:
        return [(f"{fake.first_name_female()} {fake.last_name_female()}", "PERSON")]
    return [(f"{fake.first_name_male()} {fake.last_name_male()}", "PERSON")]


def _document_number(ctx: _Context) -> list[Segment]:
    pattern = ctx.rng.choice(("??#######", "#########", "?########", "???######", "??######"))
    return [(ctx.fakers["en_GB"].bothify(pattern, letters=LETTERS), "DOCUMENT_NUMBER")]


def _flight(ctx: _Context) -> list[Segment]:
    airline = ctx.rng.choice(AIRLINES)
    number = ctx.rng.randint(100, 9899)
    gap = ctx.rng.choice(("", "", " "))
    return [(f"{airline}{gap}{number}", "FLIGHT_OR_VESSEL")]


def _amount(ctx: _Context, low: int, high: int) -> list[Segment]:
    value = ctx.rng.randrange(low, high, 50)
    return [(ctx.rng.choice(CURRENCY_FORMS).format(n=f"{value:,}"), "CURRENCY_AMOUNT")]


def _item(ctx: _Context, choices: tuple[str, ...], quantity: str = "") -> list[Segment]:
    """A controlled item, with an optional quantity written before it but outside the entity."""
    segments: list[Segment] = [(quantity, None)] if quantity else []
    return [*segments, (ctx.rng.choice(choices), "CONTROLLED_ITEM")]


def _drug(ctx: _Context) -> list[Segment]:
    grams = ctx.rng.choice((350, 600, 850, 1200, 2400, 3600, 5000, 11500))
    quantity = f"{grams} g of " if grams < 1000 else f"{grams / 1000:g} kg of "
    return _item(ctx, DRUGS, quantity)


def _tobacco(ctx: _Context, large: bool) -> list[Segment]:
    unit, item = ctx.rng.choice(TOBACCO)
    if large:
        quantity = f"{ctx.rng.randint(12, 40) if unit == 'kg of' else ctx.rng.randint(18, 90)} {unit} "
    else:
        quantity = {"cartons of": "one carton of ", "kg of": "a 250 g pouch of ", "boxes of": "a box of "}[unit]
    return [(quantity, None), (item, "CONTROLLED_ITEM")]


def _bottles(ctx: _Context) -> list[Segment]:
    count = ctx.rng.choice(("one bottle", "two bottles", "2 bottles", "one litre"))
    return [(f"{count} of ", None), (ctx.rng.choice(ALCOHOL), "CONTROLLED_ITEM")]


def _spirits(ctx: _Context) -> list[Segment]:
    return _item(ctx, ("vodka", "spirits", "rum", "whisky"), f"{ctx.rng.randint(8, 60) * 10} litres of ")


def _ammunition(ctx: _Context) -> list[Segment]:
    unit, item = ctx.rng.choice(AMMUNITION)
    count = ctx.rng.choice((12, 20, 25, 50, 100))
    return [(f"{count} {unit} " if unit else f"{count} ", None), (item, "CONTROLLED_ITEM")]


def _item_slot(name: str) -> Callable[[_Context], list[Segment]] | None:
    """The filler of an item slot, or ``None`` when ``name`` is not one."""
    simple: dict[str, tuple[str, ...]] = {
        "handgun": HANDGUNS,
        "blade": BLADES,
        "other_weapon": OTHER_WEAPONS,
        "long_gun": LONG_GUNS,
        "medicine": MEDICINES,
    }
    if name in simple:
        choices = simple[name]
        return lambda ctx: _item(ctx, choices)
    fillers: dict[str, Callable[[_Context], list[Segment]]] = {
        "drug": _drug,
        "tobacco_large": lambda ctx: _tobacco(ctx, large=True),
        "tobacco_small": lambda ctx: _tobacco(ctx, large=False),
        "bottles": _bottles,
        "spirits": _spirits,
        "ammunition": _ammunition,
        "wildlife": lambda ctx: _item(ctx, WILDLIFE, f"{ctx.rng.randint(3, 40)} "),
        "counterfeit": lambda ctx: _item(ctx, COUNTERFEIT, f"{ctx.rng.randint(12, 80)} "),
    }
    return fillers.get(name)


def _fill(name: str, ctx: _Context) -> list[Segment]:
    """The segments a slot writes: ``(text, entity type or None)``."""
    item = _item_slot(name)
    if item is not None:
        return item(ctx)
    alpha_3, locale, demonym, _ = ctx.country
    pronouns = {"he": ("he", "she"), "He": ("He", "She"), "his": ("his", "her"), "him": ("him", "her")}
    if name in pronouns:
        return [(pronouns[name][int(ctx.female)], None)]
    fillers: dict[str, Callable[[], list[Segment]]] = {
        "person": lambda: _person(ctx, ctx.country, ctx.female),
        "person2": lambda: _person(ctx, ctx.country2, ctx.rng.random() < 0.5),
        "nat_adj": lambda: [(demonym, "NATIONALITY")],
        "nat_country": lambda: [(_country_name(alpha_3), "NATIONALITY")],
        "nat_code": lambda: [(alpha_3, "NATIONALITY")],
        "nat2_adj": lambda: [(ctx.country2[2], "NATIONALITY")],
        "doc": lambda: _document_number(ctx),
        "doc2": lambda: _document_number(ctx),
        "plate": lambda: [(ctx.fakers[locale].license_plate(), "VEHICLE_PLATE")],
        "flight": lambda: _flight(ctx),
        "vessel": lambda: [(ctx.rng.choice(VESSELS), "FLIGHT_OR_VESSEL")],
        "amount": lambda: _amount(ctx, 10_500, 60_000),
        "amount_small": lambda: _amount(ctx, 300, 9_500),
        "time": lambda: [(f"{ctx.rng.randint(0, 23):02d}:{ctx.rng.choice(range(0, 60, 5)):02d}", None)],
        "place": lambda: [(ctx.rng.choice(LOCATIONS), None)],
        "count": lambda: [(str(ctx.rng.randint(3, 9)), None)],
        "benign": lambda: [(ctx.rng.choice(BENIGN_GOODS), None)],
    }
    if name not in fillers:
        raise KeyError(f"template slot {{{name}}} has no filler")
    return fillers[name]()


def render(template: str, ctx: _Context) -> tuple[str, list[dict[str, Any]]]:
    """Fills a template; returns the note and its entities (text, type, start), in order of appearance.

    The entity offsets are taken while the note is written, so ``note[start:start + len(text)] == text``.
    """
    parts: list[str] = []
    entities: list[dict[str, Any]] = []
    length = 0
    position = 0
    for match in re.finditer(r"\{(\w+)\}", template):
        literal = template[position : match.start()]
        parts.append(literal)
        length += len(literal)
        name = match.group(1)
        if name not in ctx.cache:
            ctx.cache[name] = _fill(name, ctx)
        for text, kind in ctx.cache[name]:
            if kind is not None:
                entities.append({"text": text, "type": kind, "start": length})
            parts.append(text)
            length += len(text)
        position = match.end()
    parts.append(template[position:])
    note = "".join(parts)
    for entity in entities:
        if note[entity["start"] : entity["start"] + len(entity["text"])] != entity["text"]:
            raise AssertionError(f"entity {entity} is not at its offset in {note!r}")
    return note, entities


def reference_answer(entities: list[dict[str, Any]], threat: str) -> str:
    """The answer in the format the prompt asks for (first mention of each entity, in order)."""
    unique = list(dict.fromkeys((e["text"], e["type"]) for e in entities))
    body = {"entities": [{"text": text, "type": kind} for text, kind in unique], "threat": threat}
    return json.dumps(body, ensure_ascii=False)


def build_examples(seed: int = SEED, per_label: int = PER_LABEL) -> list[Example]:
    """The data set: ``per_label`` notes for each threat label, cycling through that label's templates."""
    rng = random.Random(seed)
    fakers: dict[str, Faker] = {}
    for index, locale in enumerate(sorted({"en_GB", *(c[1] for c in COUNTRIES)})):
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(seed + index)
    by_label: dict[str, list[tuple[str, str, str]]] = {}
    for key, threat, difficulty, template in TEMPLATES:
        by_label.setdefault(threat, []).append((key, difficulty, template))
    drafts: list[tuple[str, str, str, str, list[dict[str, Any]]]] = []
    for threat, templates in by_label.items():
        for index in range(per_label):
            key, difficulty, template = templates[index % len(templates)]
            country, country2 = rng.sample(COUNTRIES, 2)
            ctx = _Context(rng=rng, fakers=fakers, country=country, country2=country2, female=rng.random() < 0.5)
            note, entities = render(template, ctx)
            drafts.append((key, threat, difficulty, note, entities))
    rng.shuffle(drafts)
    examples: list[Example] = []
    for number, (key, threat, difficulty, note, entities) in enumerate(drafts, start=1):
        examples.append(
            Example(
                id=f"ent-{number:03d}",
                question=note,
                references=(reference_answer(entities, threat),),
                metadata={"template": key, "threat": threat, "difficulty": difficulty},
                target={"entities": entities, "threat": threat},
            )
        )
    return examples


def write_data(path: Path | None = None, seed: int = SEED) -> Path:
    """Writes the data set to ``path`` (default: the shipped ``entities.jsonl``) and returns the path."""
    target = path if path is not None else data_path(FILE_NAME)
    write_examples(target, build_examples(seed))
    return target


if __name__ == "__main__":
    print(f"wrote {write_data()}")
