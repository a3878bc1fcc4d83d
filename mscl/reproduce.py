"""``python -m mscl.reproduce --profile cpu``: run the numbered notebooks in order with papermill.

This is what ``make reproduce`` (and ``make smoke``) call. Each notebook runs with its profile's
parameter files; executed copies go to ``<reports>/notebooks/`` (see :func:`mscl.paths.reports_dir`).
Notebooks that train reuse every stage already finished under ``artifacts/runs/``, so a rerun after
a kill picks up where it stopped. Notebook 03 (one stage of one method) runs once per stage of the
domain-independent stream for CIT and PBL.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mscl.paths import REPO_ROOT, reports_dir

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
STAGE_NOTEBOOK = "03_stage_training"
STAGE_METHODS = ("cit", "pbl")
STAGE_STREAM = "domain_independent"


def planned_runs(profile: str, backbone: str | None) -> list[tuple[str, str, dict]]:
    """(notebook name, executed-copy name, parameters) in the order they run."""
    from mscl import data
    from mscl.params import load_params
    from mscl.stages import ensure_benchmark

    common = {"profile": profile, **({"backbone": backbone} if backbone else {})}
    runs = []
    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]*_*.ipynb")):
        name = path.stem
        if name == STAGE_NOTEBOOK:
            seed = load_params(profile, "training").seed
            stages = data.stream_stages(ensure_benchmark(profile, seed), STAGE_STREAM)
            for method in STAGE_METHODS:
                for stage in stages:
                    runs.append((name, f"{name}_{STAGE_STREAM}_{method}_stage{stage}",
                                 {**common, "stream": STAGE_STREAM, "method": method, "stage": stage}))
        else:
            runs.append((name, name, dict(common)))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--backbone", default=None, help="override the profile's backbone (a name, HF id or path)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these notebooks (e.g. 00 01)")
    args = parser.parse_args(argv)

    import papermill as pm

    out_dir = reports_dir(args.profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = planned_runs(args.profile, args.backbone)
    if args.only:
        runs = [r for r in runs if any(r[0].startswith(prefix) for prefix in args.only)]
    start = time.perf_counter()
    for i, (name, out_name, parameters) in enumerate(runs, 1):
        tic = time.perf_counter()
        print(f"[{i}/{len(runs)}] {name} {parameters}", flush=True)
        pm.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(out_dir / f"{out_name}.ipynb"),
                            parameters=parameters, cwd=str(NOTEBOOKS_DIR), kernel_name="python3",
                            progress_bar=False, log_output=False)
        print(f"[{i}/{len(runs)}] {name} done in {time.perf_counter() - tic:.0f}s", flush=True)
    print(f"reproduce ({args.profile}): {len(runs)} notebook runs in {time.perf_counter() - start:.0f}s; "
          f"executed copies in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
