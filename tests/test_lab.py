"""`make lab` starts JupyterLab on notebooks/ for any user, root included (Jupyter refuses root
without --allow-root, which the Makefile passes when the user is root)."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest

from mscl.common.paths import REPO_ROOT


@pytest.mark.trains
@pytest.mark.skipif(not (REPO_ROOT / ".venv" / "bin" / "jupyter").exists(), reason="needs make setup's .venv")
def test_make_lab_serves_the_notebooks():
    from mscl.lab import serve

    with serve("mscl-test") as base:
        with urllib.request.urlopen(f"{base}/api/contents?token=mscl-test", timeout=5) as r:
            names = {item["name"] for item in json.load(r)["content"]}
    assert {"00_quickstart.ipynb", "08_report.ipynb", "walkthrough"} <= names


@pytest.mark.trains
@pytest.mark.skipif(not (REPO_ROOT / ".venv" / "bin" / "jupyter").exists(), reason="needs make setup's .venv")
def test_jupyterlab_renders_a_notebook_in_a_real_browser(tmp_path):
    from mscl import lab

    if lab.browser() is None:  # .ci/run installs it, and a skip fails CI (MSCL_NO_SKIPS)
        pytest.skip("no headless Chromium on this machine (apt-get install chromium)")
    shot = tmp_path / "lab.png"
    dom = lab.notebook_page("02_pilot.ipynb", shot)
    cells = json.loads((lab.NOTEBOOKS / "02_pilot.ipynb").read_text(encoding="utf-8"))["cells"]
    # every cell of the notebook, rendered by JupyterLab's own code (the stylesheets also name jp-Cell)
    assert dom.count('class="lm-Widget jp-Cell ') == len(cells) >= 10, dom[-3000:]
    assert "Pilot: plain continual fine-tuning" in dom and "profile_status" in dom
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    from mscl.evaluation.report import profile_status

    assert "make reproduce" in profile_status("cpu") and "smoke" in profile_status("cpu")
    assert "tiny random model" in profile_status("smoke")
    stage = scratch / "runs" / "cpu" / "m" / "seed0" / "domain_independent" / "cit" / "stage1"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text("{}")
    assert profile_status("cpu").startswith("profile cpu: 1 finished stages")


def test_the_committed_notebooks_have_no_outputs(tmp_path):
    from mscl.lab import NOTEBOOKS, notebooks_with_outputs

    committed = [p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    assert len(committed) >= 10 and not notebooks_with_outputs(committed)
    executed = tmp_path / "executed.ipynb"
    executed.write_text(json.dumps({"cells": [{"cell_type": "code", "execution_count": 1, "outputs": [],
                                               "source": "1"}]}))
    assert notebooks_with_outputs([executed]) == [f"{executed}: cell 0 has outputs "
                                                  "(clear them: Edit > Clear Outputs of All Cells)"]


def test_every_numbered_notebook_narrates_and_keeps_its_cells_short():
    from mscl.lab import NOTEBOOKS

    for path in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        prose = [c for c in cells if c["cell_type"] == "markdown"]
        longest = max(len("".join(c["source"]).splitlines()) for c in cells if c["cell_type"] == "code")
        assert len(prose) >= 3, f"{path.name}: {len(prose)} markdown cells, want at least 3"
        assert longest <= 40, f"{path.name}: a code cell of {longest} lines (the logic belongs in mscl)"


def test_every_notebook_cell_has_an_id():
    from mscl.lab import NOTEBOOKS

    for path in sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        missing = [i for i, c in enumerate(cells) if "id" not in c]
        assert not missing, f"{path.name}: cells {missing} have no id (nbformat 4.5 requires one)"


def test_nbval_skips_no_notebook_cell():
    """`make test` runs the notebooks under nbval, where tests/conftest.py's MSCL_NO_SKIPS hook does not reach:
    a cell skips there only by a NBVAL_SKIP comment or an nbval-skip tag, so no cell may carry one."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    from mscl.lab import NOTEBOOKS

    for path in sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        skipped = []
        for i, cell in enumerate(cells):
            markers = {*find_comment_markers("".join(cell["source"])), *(find_metadata_tags(cell["metadata"]) or ())}
            if cell["cell_type"] == "code" and ("skip", True) in markers:
                skipped.append(i)
        assert not skipped, f"{path.name}: cells {skipped} are skipped by nbval (CI runs every test it has)"
