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


def test_notebooks_open_on_the_cpu_run_and_link_their_executed_copy():
    import nbformat

    for path in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        namespace: dict = {}
        env = os.environ.pop("MSCL_PROFILE", None)
        try:
            exec(params.source, namespace)
            assert namespace["profile"] == "cpu", path.name
            os.environ["MSCL_PROFILE"] = "smoke"
            exec(params.source, namespace)
            assert namespace["profile"] == "smoke", path.name
        finally:
            os.environ.pop("MSCL_PROFILE", None)
            if env is not None:
                os.environ["MSCL_PROFILE"] = env
        assert "../reports/notebooks/" in nb.cells[0].source, path.name
        assert "profile_status(profile)" in nb.cells[nb.cells.index(params) + 1].source, path.name


def test_profile_status_says_whether_the_stages_are_there(scratch):
    from mscl.report import profile_status

    assert "make reproduce" in profile_status("cpu") and "smoke" in profile_status("cpu")
    assert "tiny random model" in profile_status("smoke")
    stage = scratch / "runs" / "cpu" / "m" / "seed0" / "domain_independent" / "cit" / "stage1"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text("{}")
    assert profile_status("cpu").startswith("profile cpu: 1 finished stages")
