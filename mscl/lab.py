"""JupyterLab, started as ``make lab`` starts it, and rendered in a headless browser.

``python -m mscl.lab --screenshot reports/figures/jupyterlab.png [--notebook 02_pilot.ipynb]``
starts ``make lab`` on a free port, opens the notebook in Debian's Chromium (headless), checks that
the page shows the notebook's cells, and saves a screenshot (the README's picture of it).
``tests/test_lab.py`` runs the same check. ``python -m mscl.lab --check-clean [NOTEBOOK ...]`` (the
pre-commit hook) fails on a notebook committed with outputs: executed copies belong in ``reports/``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from mscl.common.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser() -> str | None:
    """The headless browser on this machine (Debian's ``chromium``), or ``None``."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@contextlib.contextmanager
def serve(token: str = "mscl-lab", timeout: float = 90) -> Iterator[str]:
    """``make lab`` on a free port, until the block ends; yields its base URL once ``/api/status``
    answers (the server's output in the error if it never does)."""
    port = free_port()
    proc = subprocess.Popen(["make", "lab", f"PORT={port}"], cwd=REPO_ROOT, env={**os.environ, "JUPYTER_TOKEN": token},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                    raise RuntimeError(f"JupyterLab did not answer on {base}: {out[-2000:]}") from None
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def render(url: str, screenshot: Path | None = None, size: str = "1400,900", budget_ms: int = 20000) -> str:
    """The DOM of ``url`` after its scripts ran (``budget_ms`` of virtual time) in headless Chromium;
    with ``screenshot``, also a PNG of the page at ``size``."""
    exe = browser()
    if exe is None:
        raise RuntimeError(f"no headless browser: install one of {', '.join(BROWSERS)} (apt-get install chromium)")
    common = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", f"--virtual-time-budget={budget_ms}",
              f"--window-size={size}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    if screenshot is not None:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=180, check=True)
    return dom


def notebook_page(notebook: str, screenshot: Path | None = None) -> str:
    """Start JupyterLab, open ``notebooks/<notebook>`` and return the rendered page's DOM."""
    token = "mscl-lab"
    with serve(token) as base:
        return render(f"{base}/lab/tree/{notebook}?token={token}", screenshot)


def notebooks_with_outputs(paths: list[Path]) -> list[str]:
    """The notebooks among ``paths`` that hold outputs or execution counts, each with its first such cell."""
    dirty = []
    for path in paths:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                dirty.append(f"{path}: cell {i} has outputs (clear them: Edit > Clear Outputs of All Cells)")
                break
    return dirty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-clean", nargs="*", type=Path, default=None, metavar="NOTEBOOK",
                        help="fail on notebooks with outputs (default: every notebook under notebooks/)")
    parser.add_argument("--screenshot", type=Path, default=REPO_ROOT / "reports" / "figures" / "jupyterlab.png")
    parser.add_argument("--notebook", default="02_pilot.ipynb")
    args = parser.parse_args(argv)
    if args.check_clean is not None:
        committed = [p for p in sorted(NOTEBOOKS.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
        dirty = notebooks_with_outputs(args.check_clean or committed)
        print("\n".join(dirty) or "every notebook is committed without outputs")
        return 1 if dirty else 0
    dom = notebook_page(args.notebook, args.screenshot)
    cells = dom.count("jp-Cell ")
    print(f"{args.notebook}: {cells} cells rendered; screenshot {args.screenshot}")
    return 0 if cells else 1


if __name__ == "__main__":
    sys.exit(main())
