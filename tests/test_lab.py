"""`make lab` starts JupyterLab on notebooks/ for any user, root included (Jupyter refuses root
without --allow-root, which the Makefile passes when the user is root)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from mscl.paths import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (REPO_ROOT / ".venv" / "bin" / "jupyter").exists(), reason="needs make setup's .venv")
def test_make_lab_serves_the_notebooks():
    port, token = _free_port(), "mscl-test"
    env = {**os.environ, "JUPYTER_TOKEN": token}
    proc = subprocess.Popen(["make", "lab", f"PORT={port}"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = None
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                    status = json.load(r)
                break
            except OSError:
                time.sleep(0.5)
        assert status is not None, f"JupyterLab did not answer: {proc.stdout.read1().decode() if proc.poll() else ''}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5) as r:
            names = {item["name"] for item in json.load(r)["content"]}
        assert {"00_quickstart.ipynb", "08_report.ipynb"} <= names
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
