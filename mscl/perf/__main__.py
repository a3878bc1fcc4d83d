"""``python -m mscl.perf``: see :mod:`mscl.perf.run`."""
import sys

from mscl.perf.run import main

if __name__ == "__main__":
    sys.exit(main())
