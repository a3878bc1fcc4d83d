"""Wall time by named phase: what a stage's manifest and ``make bench``'s phase table report."""
from __future__ import annotations

import contextlib
import time
from typing import Iterator


@contextlib.contextmanager
def timed(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the block's wall time (seconds) to ``timings[name]``; ``None`` times nothing."""
    tic = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - tic
