"""``make bench``: the pipeline's speed, measured side by side in one run (see :mod:`mscl.bench.run`).

- :mod:`~mscl.bench.machine`: the bars, the machine, the shared setup;
- :mod:`~mscl.bench.compute`: trainer throughput, PBL against CIT, FLOP/s, batched generation;
- :mod:`~mscl.bench.stages`: whole stages as subprocesses (job parallelism, wall time, peak memory);
- :mod:`~mscl.bench.run`: the command line and ``benchmarks.md``.
"""
from mscl.bench.compute import LinearTimer
from mscl.bench.machine import BARS, meets
from mscl.bench.run import main, run

__all__ = ["BARS", "LinearTimer", "main", "meets", "run"]
