"""The README's "Results at a glance", written from the committed report's tables, never by hand.

``python -m mscl.evaluation.glance [--profile cpu] [--check]`` rewrites the block between the two
markers in ``README.md`` from three of the report's tables: ``04_domain_independent.csv`` (ACC per
method and stage, mean±seed sd), ``08_claims.csv`` (each claim's Holm-corrected verdict, counted per
section) and ``08_stage_costs.csv`` (what the stages cost). Notebook 08 calls it after writing the
report. ``--check`` exits 1 when the README's block differs from what the tables give
(``tests/test_report.py`` runs it).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from mscl.common.io import atomic_write_text
from mscl.common.paths import REPO_ROOT, reports_dir

BEGIN = "<!-- results at a glance: written by `python -m mscl.evaluation.glance` from reports/tables -->"
END = "<!-- end of the results at a glance -->"
NAMES = {"cit": "CIT", "pbl": "PBL", "mocl": "MoCL", "flearning": "F-Learning", "ours": "Ours",
         "cit+matched": "CIT, compute-matched", "replay": "Replay", "dpo": "DPO on revisions", "osf": "OSF"}


def _cell(value: str) -> str:
    """``45.2±8.5 (+24.8)`` -> ``45.2±8.5``; ``—`` (the shared CIT stage) -> ``(CIT's)``."""
    if pd.isna(value):
        return "—"
    value = str(value).strip()
    return "(CIT's)" if value == "—" else re.sub(r"\s*\([+-][\d.]+\)$", "", value)


def glance(profile: str = "cpu") -> str:
    """The block: the main table's ACC row per method, then the claims' verdicts per section."""
    tables = reports_dir(profile) / "tables"
    main = pd.read_csv(tables / "04_domain_independent.csv")
    acc = [c for c in main.columns if c.endswith(" ACC")]
    lines = ["| method | " + " | ".join(c.removesuffix(" ACC") for c in acc) + " |",
             "|---|" + "---|" * len(acc)]
    several = main["backbone"].nunique() > 1 if "backbone" in main else False

    def label(r) -> str:
        return f"{NAMES.get(r.method, r.method)}" + (f" ({r.backbone})" if several else "")

    lines += [f"| {label(r)} | " + " | ".join(_cell(r[c]) for c in acc) + " |" for _, r in main.iterrows()]
    claims = pd.read_csv(tables / "08_claims.csv")
    agree = claims["verdict (Holm)"] == "agrees"
    per_section = claims.assign(agree=agree).groupby("section", sort=False)["agree"].agg(["sum", "size"])
    sections = "; ".join(f"{s} {int(row['sum'])} of {int(row['size'])}" for s, row in per_section.iterrows())
    control = claims["claim"].str.contains("cit+matched", regex=False)
    lines += ["", f"**{int(agree.sum())} of the {len(claims)} claims checked here agree** after Holm's correction "
              f"(95% bootstrap intervals over seeds and facts): {sections}."
              + (f" {int(control.sum())} of the main-table claims set Ours against CIT trained on as many examples "
                 "(`cit+matched`), a control the paper does not run." if control.any() else "")]
    if (~agree).any():
        lines += ["", "Not reproduced (ours, in points, with its 95% interval):", ""]
        lines += [f"- {r.section}: {r.claim}: {r['ours (points, 95% CI)']}, {r['verdict (Holm)']}"
                  for _, r in claims[~agree].iterrows()]
    costs_path = tables / "08_stage_costs.csv"
    if costs_path.is_file():
        costs = pd.read_csv(costs_path).sort_values("total_min", ascending=False)
        total = costs["total_min"].sum()
        top = "; ".join(f"{r.method} on {r.stream.replace('_', '-')}, {r.total_min:.0f}"
                        for r in costs.head(3).itertuples())
        lines += ["", f"**Cost.** The run's stages took {total:.0f} worker-minutes by their manifests "
                  f"(`reports/tables/08_stage_costs.md`), about {total / 2:.0f} minutes on the two 1-thread workers "
                  f"of a 2-core machine, over the 120-minute target; the largest: {top}."]
    return "\n".join([BEGIN, *lines, END])


def update(readme: Path = REPO_ROOT / "README.md", profile: str = "cpu") -> bool:
    """Rewrite the README's block from the tables; True if it changed."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme}: no results block (a line {BEGIN!r} ... a line {END!r}) to rewrite")
    head, rest = text.split(BEGIN, 1)
    new = head + glance(profile) + rest.split(END, 1)[1]
    if new != text:
        atomic_write_text(readme, new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["cpu"], help="the committed run's (the README says cpu)")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's block is out of date")
    args = parser.parse_args(argv)
    if args.check:
        current = args.readme.read_text(encoding="utf-8")
        ok = glance(args.profile) in current
        print("README results block is up to date" if ok else f"{args.readme}: results block out of date; "
              "run `python -m mscl.evaluation.glance`")
        return 0 if ok else 1
    print(f"{args.readme}: {'rewritten' if update(args.readme, args.profile) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
