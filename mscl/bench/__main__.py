"""``python -m mscl.bench``: see :mod:`mscl.bench.run`."""
import sys

from mscl.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
