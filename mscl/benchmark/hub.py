"""The benchmark in the ecosystem's format: a ``datasets.DatasetDict`` with one split per stream,
stage and split (``domain_independent_stage2_train``, ``..._eval``, ``..._validation``, ...),
written as parquet beside the data with the data card as its README, so that
``datasets.load_dataset("parquet", data_files=...)`` (or ``load_dataset(<folder>)``, which reads the
README's ``configs``) reads it without mscl.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mscl.benchmark.card import write_data_card
from mscl.benchmark.records import FIELDS, SPLITS, STREAMS, read_stream

HUB_FOLDER = "hub"  # under the benchmark's folder


def split_name(stream: str, stage: int, split: str) -> str:
    """The split's name: ``<stream>_stage<N>_<split>`` (the general set is stage 0)."""
    return f"{stream}_stage{stage}_{split}"


def features():
    """The columns and their types, as the project's reader gives them."""
    import datasets

    return datasets.Features({f: datasets.Value({"stage": "int64", "edited": "bool"}.get(f, "string"))
                              for f in FIELDS})


def dataset_dict(folder: str | Path):
    """The benchmark of ``folder`` as a ``DatasetDict``, one split per (stream, stage, split), in file order."""
    import datasets

    splits = {}
    for stream in STREAMS:
        records = read_stream(folder, stream)
        for stage in sorted({r.stage for r in records}):
            for split in SPLITS:
                rows = [dataclasses.asdict(r) for r in records if r.stage == stage and r.split == split]
                if rows:
                    splits[split_name(stream, stage, split)] = datasets.Dataset.from_list(rows, features=features())
    return datasets.DatasetDict(splits)


def _readme(card: str, names: list[str]) -> str:
    """The data card with a dataset-card header that lists every split's parquet file."""
    header = ["---", "configs:", "- config_name: default", "  data_files:"]
    header += [line for name in names for line in (f"  - split: {name}", f"    path: {name}.parquet")]
    return "\n".join(header + ["---", ""]) + card


def export(folder: str | Path) -> Path:
    """Write ``<folder>/hub/<split>.parquet`` for every split and ``README.md`` (the data card);
    returns the hub folder."""
    folder = Path(folder)
    out = folder / HUB_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    splits = dataset_dict(folder)
    for name, split in splits.items():
        split.to_parquet(str(out / f"{name}.parquet"))
    card = write_data_card(folder, out / "data_card.md").read_text(encoding="utf-8")
    (out / "README.md").write_text(_readme(card, list(splits)), encoding="utf-8")
    (out / "data_card.md").unlink()
    return out


def _order(name: str) -> tuple[int, int, int]:
    """Where a split's rows stand in the files: stream, then stage, then split."""
    stream, _, rest = name.partition("_stage")
    stage, _, split = rest.partition("_")
    return STREAMS.index(stream), int(stage), SPLITS.index(split)


def data_files(hub: str | Path) -> dict[str, str]:
    """``{split: parquet path}`` of an exported benchmark in file order, for
    ``load_dataset("parquet", data_files=...)``."""
    return {path.stem: str(path) for path in sorted(Path(hub).glob("*.parquet"), key=lambda p: _order(p.stem))}


def load(profile: str):
    """The profile's benchmark as a ``DatasetDict`` read back from its parquet export (built and
    exported first if needed)."""
    import datasets

    from mscl.benchmark.probe import ensure_benchmark
    from mscl.common.params import load_params

    folder = ensure_benchmark(profile, load_params(profile, "training").data_seed)
    hub = folder / HUB_FOLDER
    if not (hub / "README.md").is_file():
        export(folder)
    return datasets.load_dataset("parquet", data_files=data_files(hub), features=features())
