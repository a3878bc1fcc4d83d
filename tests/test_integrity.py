"""A stage is what its manifest says (smoke profile, tiny random backbone): caches carry their
identity, reuse checks the files, errors name the file and the command that recovers, one writer
per stage, and a run says what it did. One test per probe a new user tried."""
from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys

import pytest

from mscl.__main__ import main as cli
from mscl.common.io import read_json, read_jsonl, write_json
from mscl.common.locks import StageLockedError, stage_lock
from mscl.common.params import load_params
from mscl.common.paths import run_dir
from mscl.pipeline import integrity, verify
from mscl.pipeline.integrity import StageIntegrityError
from mscl.pipeline.stages import StaleRunError, run_stage

STREAM = "domain_independent"


def _params(**pbl):
    params = load_params("smoke", "training")
    return dataclasses.replace(params, pbl=dataclasses.replace(params.pbl, **pbl)) if pbl else params


def _folder(method: str, stage: int, root=None):
    return run_dir("smoke", "tiny-random", STREAM, method, stage, root, seed=0)


def _advice(method: str, stage: int) -> str:
    return f"python -m mscl clean --profile smoke --stream {STREAM} --method {method} --stage {stage} --seed 0"


class Killed(Exception):
    """Stands for a SIGKILL during training (the real kill is tests/test_reliability.py's)."""


def test_a_cache_made_under_other_params_is_recomputed(scratch, monkeypatch, capsys):
    """Killed while training with K=2, rerun with K=3: the samples are redrawn with K=3, the run says
    so, and the predictions equal a clean K=3 run's."""
    run_stage("smoke", STREAM, "pbl", 1, verbose=False)

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patched, pytest.raises(Killed):
        patched.setattr("mscl.methods.base.train_lora", killed)
        run_stage("smoke", STREAM, "pbl", 2, params=_params(k=2), verbose=False)
    cached = read_jsonl(_folder("pbl", 2) / "preference.jsonl")
    assert all(sum(r["count"] for r in row["responses"]) == 2 for row in cached)

    run_stage("smoke", STREAM, "pbl", 2, params=_params(k=3))
    assert "recomputing" in capsys.readouterr().out
    redrawn = read_jsonl(_folder("pbl", 2) / "preference.jsonl")
    assert all(sum(r["count"] for r in row["responses"]) == 3 for row in redrawn)
    clean_root = scratch / "clean-runs"
    run_stage("smoke", STREAM, "pbl", 2, params=_params(k=3), runs_root=clean_root, verbose=False)
    assert read_jsonl(_folder("pbl", 2) / "predictions.jsonl") == \
        read_jsonl(_folder("pbl", 2, clean_root) / "predictions.jsonl")


def test_a_stage_from_other_code_is_said_on_reuse_and_flagged_by_verify(scratch, capsys):
    run_stage("smoke", STREAM, "cit", 1, verbose=False)
    manifest_path = _folder("cit", 1) / "manifest.json"
    manifest = read_json(manifest_path)
    assert manifest["code"]["source_hash"] and "commit" in manifest["code"]
    manifest["code"] = {"source_hash": "0" * 64, "commit": "f" * 40, "dirty": False}
    write_json(manifest_path, manifest)
    run_stage("smoke", STREAM, "cit", 1)
    out = capsys.readouterr().out
    assert "reused (trained by other code: commit ffffffff)" in out and str(_folder("cit", 1)) in out
    assert list(verify.other_code("smoke")) == [str(_folder("cit", 1).relative_to(scratch))]


def test_a_deleted_adapter_is_an_error_naming_it_and_the_way_out(scratch, monkeypatch):
    run_stage("smoke", STREAM, "cit", 2, verbose=False)
    adapter = next((_folder("cit", 1) / "adapter").glob("*.safetensors"))
    adapter.unlink()
    with pytest.raises(StageIntegrityError, match=f"{adapter}.*missing.*{_advice('cit', 1)}"):
        run_stage("smoke", STREAM, "cit", 1, verbose=False)
    with pytest.raises(StageIntegrityError, match="missing"):  # stage 2's reuse checks its predecessor
        run_stage("smoke", STREAM, "cit", 2, verbose=False)
    assert any("missing" in v for v in verify.stage_files_match("smoke").values())


def test_a_truncated_manifest_names_its_file_and_line(scratch):
    run_stage("smoke", STREAM, "cit", 2, verbose=False)
    first = _folder("cit", 1) / "manifest.json"
    first.write_text(first.read_text()[:200])
    with pytest.raises(StageIntegrityError, match=rf"{first}, line \d+.*{_advice('cit', 1)}"):
        run_stage("smoke", STREAM, "cit", 2, verbose=False)  # a finished stage 2 checks its stage 1
    assert any("line" in v for v in verify.stage_files_match("smoke").values())


def test_a_corrupt_earlier_prediction_file_stops_the_next_stage_before_training(scratch, monkeypatch):
    run_stage("smoke", STREAM, "cit", 1, verbose=False)
    predictions = _folder("cit", 1) / "predictions.jsonl"
    predictions.write_text(predictions.read_text().replace("}", "", 1))
    trained = []
    monkeypatch.setattr("mscl.methods.base.train_lora", lambda *a, **k: trained.append(1))
    with pytest.raises(StageIntegrityError, match=f"{predictions}.*differs"):
        run_stage("smoke", STREAM, "cit", 2, verbose=False)
    assert not trained and not (_folder("cit", 2) / "manifest.json").exists()


def test_the_stale_run_advice_works_as_written(scratch, capsys):
    run_stage("smoke", STREAM, "cit", 2, verbose=False)
    run_stage("smoke", STREAM, "pbl", 2, verbose=False)
    params = load_params("smoke", "training")
    other = dataclasses.replace(params, train=dataclasses.replace(params.train, learning_rate=5e-4))
    with pytest.raises(StaleRunError) as error:
        run_stage("smoke", STREAM, "cit", 1, params=other, verbose=False)
    command = str(error.value).split("`")[1]
    assert command == _advice("cit", 1)
    assert cli(shlex.split(command)[3:]) == 0
    # the shared stage 1 and everything built on it went; nothing else did
    assert not _folder("cit", 1).exists() and not _folder("cit", 2).exists() and not _folder("pbl", 2).exists()
    assert (scratch / "data" / "smoke" / "manifest.json").is_file()
    run_stage("smoke", STREAM, "cit", 1, params=other, verbose=False)


def test_a_second_writer_waits_or_refuses_naming_the_first(scratch, monkeypatch):
    folder = _folder("cit", 1)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder.mkdir(parents=True)
        (folder / ".lock").write_text(json.dumps({"pid": holder.pid, "host": __import__("socket").gethostname()}))
        with pytest.raises(StageLockedError, match=f"process {holder.pid}"):
            with stage_lock(folder, timeout=0):
                pass
        monkeypatch.setenv("MSCL_LOCK_TIMEOUT", "0")
        with pytest.raises(StageLockedError, match=f"{folder}.*process {holder.pid}"):
            run_stage("smoke", STREAM, "cit", 1, verbose=False)
    finally:
        holder.kill()
        holder.wait()
    run_stage("smoke", STREAM, "cit", 1, verbose=False)  # a dead holder's lock is taken over
    assert (folder / "manifest.json").is_file() and not (folder / ".lock").exists()


def test_a_run_says_per_stage_what_it_did_and_where(scratch, capsys):
    assert cli(["run", "--profile", "smoke", "--stream", STREAM, "--method", "cit", "--stage", "2"]) == 0
    first = capsys.readouterr().out
    assert cli(["run", "--profile", "smoke", "--stream", STREAM, "--method", "cit", "--stage", "2"]) == 0
    again = capsys.readouterr().out
    for stage in (1, 2):
        assert f"stage {stage} | seed 0] trained in" in first and str(_folder("cit", stage)) in first
    assert "stage 2 | seed 0] reused (trained by this code" in again and str(_folder("cit", 2)) in again


def test_the_manifest_records_its_files_code_and_commit(scratch):
    manifest = run_stage("smoke", STREAM, "pbl", 2, verbose=False)
    assert {"predictions.jsonl", "preference.jsonl", "train_log.json"} <= set(manifest["files"])
    assert any(name.startswith("adapter/") for name in manifest["files"])
    assert set(manifest["code"]) == {"source_hash", "commit", "dirty"}
    assert manifest["files"] == integrity.file_hashes(_folder("pbl", 2))


def test_a_truncated_data_manifest_names_its_file_and_line(scratch):
    from mscl.common.io import CorruptFileError

    run_stage("smoke", STREAM, "cit", 1, verbose=False)
    manifest = scratch / "data" / "smoke" / "manifest.json"
    manifest.write_text(manifest.read_text()[:150])
    with pytest.raises(CorruptFileError, match=rf"{manifest}, line \d+, column \d+"):
        run_stage("smoke", STREAM, "cit", 1, verbose=False)
