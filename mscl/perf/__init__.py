"""``make bench``: the pipeline's speed, measured side by side in one run (see :mod:`mscl.perf.run`).

- :mod:`~mscl.perf.machine`: the bars, the machine, the shared setup;
- :mod:`~mscl.perf.compute`: trainer throughput, PBL against CIT, FLOP/s, batched generation;
- :mod:`~mscl.perf.stages`: whole stages as subprocesses (job parallelism, wall time, peak memory);
- :mod:`~mscl.perf.run`: the command line and ``benchmarks.md``.
"""
from mscl.perf.compute import LinearTimer
from mscl.perf.machine import BARS, meets
from mscl.perf.run import main, run

__all__ = ["BARS", "LinearTimer", "main", "meets", "run"]
