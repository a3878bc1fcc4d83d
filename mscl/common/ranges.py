"""How a params schema declares what its fields allow: an interval (:func:`within`), non-empty
(:func:`nonempty`), and the error a file that breaks them raises (:class:`ParamsError`)."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any


class ParamsError(ValueError):
    """A params file that does not match its schema; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Range:
    """An allowed interval of a numeric field, written as in mathematics: ``[1, inf)``, ``(0, 1]``."""
    spec: str
    low: float
    high: float
    low_closed: bool
    high_closed: bool
    why: str = ""                      # what the bound means, when the interval alone does not say

    @classmethod
    def parse(cls, spec: str, why: str = "") -> "Range":
        m = re.fullmatch(r"([\[(])\s*(-inf|[-+0-9.e]+)\s*,\s*(inf|[-+0-9.e]+)\s*([\])])", spec)
        if not m:
            raise ValueError(f"not an interval: {spec!r} (write e.g. '[1, inf)' or '(0, 1]')")
        return cls(spec, float(m[2]), float(m[3]), m[1] == "[", m[4] == "]", why)

    def __contains__(self, value: float) -> bool:
        return (math.isfinite(value)
                and (self.low < value or (self.low_closed and value == self.low))
                and (value < self.high or (self.high_closed and value == self.high)))

    def describe(self, value: Any) -> str:
        kind = "an integer" if isinstance(value, int) else "a number"
        return f"{kind} in {self.spec}" + (f" ({self.why})" if self.why else "")


def within(spec: str, why: str = "", nonempty: bool = False) -> Any:
    """A dataclass field whose value (each element, for a list) must lie in the interval ``spec``."""
    return dataclasses.field(metadata={"range": Range.parse(spec, why), "nonempty": nonempty})


def nonempty() -> Any:
    """A dataclass field (a list or mapping) that must not be empty."""
    return dataclasses.field(metadata={"nonempty": True})


POSITIVE_INT = "[1, inf)"     # counts and sizes: at least one
COUNT = "[0, inf)"            # counts where 0 means none (or, where a comment says so, all)
POSITIVE = "(0, inf)"         # rates, temperatures, scales
NON_NEGATIVE = "[0, inf)"     # weights, penalties
UNIT = "[0, 1]"               # shares, quantiles, F1
SEED = "[0, inf)"             # numpy and torch seeds are non-negative
