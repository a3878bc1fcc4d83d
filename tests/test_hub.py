"""The benchmark as a Hugging Face dataset (mscl/benchmark/hub.py), read back without mscl."""
from __future__ import annotations

import dataclasses

import datasets

from mscl import benchmark
from mscl.benchmark import hub
from mscl.benchmark.probe import ensure_benchmark


def test_the_parquet_export_gives_back_the_projects_rows(scratch):
    loaded = benchmark.load("smoke")
    folder = ensure_benchmark("smoke", 0)
    plain = datasets.load_dataset("parquet", data_files=hub.data_files(folder / hub.HUB_FOLDER),
                                  cache_dir=str(scratch / "hf-cache"))  # no mscl features: parquet's own
    assert set(plain) == set(loaded)
    for stream in benchmark.STREAMS:
        records = [dataclasses.asdict(r) for r in benchmark.read_stream(folder, stream)]
        names = [name for name in loaded if name.startswith(f"{stream}_stage")]
        assert [row for name in names for row in plain[name]] == records  # file order, split by split
        assert [row for name in names for row in loaded[name]] == records
    assert {"domain_independent_stage2_train", "domain_independent_stage2_eval",
            "domain_independent_stage2_validation", "domain_independent_stage1_heldout",
            "real_revisions_stage2_train", "real_revisions_stage5_eval", "real_revisions_stage2_validation",
            "real_revisions_stage1_heldout"} <= set(loaded)
    readme = (folder / hub.HUB_FOLDER / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\nconfigs:") and "# " in readme.split("---", 2)[2]  # the data card follows
