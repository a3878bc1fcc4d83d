"""The README's "Results at a glance", written from the committed report's tables, never by hand.

``python -m mscl.evaluation.glance [--profile cpu] [--check]`` rewrites the block between the two
markers in ``README.md`` from three of the report's tables: ``08_claims.csv`` (first the finding,
:func:`finding`: whether the paper's gains hold at every budget of the budget axis; then each claim's
Holm-corrected verdict, counted per section), ``04_domain_independent.csv`` (ACC per method and stage,
mean±seed sd) and ``08_stage_costs.csv`` (what the stages cost). ``reports/README.md`` opens with the
same finding. Notebook 08 calls it after writing the
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
COST_TARGET_MIN = 600   # the whole cpu run, budget axis and new baselines included, in worker-minutes
NAMES = {"cit": "CIT", "pbl": "PBL", "mocl": "MoCL", "flearning": "F-Learning", "ours": "Ours",
         "cit+matched": "CIT, compute-matched", "replay": "Replay", "dpo": "DPO on revisions", "osf": "OSF"}


def _cell(value: str) -> str:
    """``45.2±8.5 (+24.8)`` -> ``45.2±8.5``; ``—`` (the shared CIT stage) -> ``(CIT's)``."""
    if pd.isna(value):
        return "—"
    value = str(value).strip()
    return "(CIT's)" if value == "—" else re.sub(r"\s*\([+-][\d.]+\)$", "", value)


# the comparisons the headline follows across the budgets (the budget claims' wording) and how it names them
HEADLINE_PAIRS = {"ours ACC > cit": "Ours above CIT", "ours ACC > cit+matched": "Ours above CIT on as many examples "
                  "(`cit+matched`: the same gradient steps)", "pbl ACC > cit": "PBL alone above CIT"}
# the claims outside the budget axis the headline reports (section, the claim's start)
HEADLINE_OTHERS = (("general knowledge", "Ours ACC on the general set"), ("cross-domain", "Ours average accuracy"),
                   ("cross-domain", "Ours backward transfer"), ("retention", "Ours KRR"))


def _claim_cell(row: pd.Series) -> str:
    """A claim's Holm-adjusted interval and its Holm verdict."""
    return f"{holm_interval(row)}, {row['verdict (Holm)']}"


def holm_interval(row: pd.Series) -> str:
    """A claims-table row's interval compatible with its Holm verdict (the raw 95% one where the table
    has none, i.e. a claim without a p-value)."""
    interval = row.get("ours (points, Holm CI)", "—")
    return row["ours (points, 95% CI)"] if pd.isna(interval) or interval == "—" else interval


def finding(claims_df: pd.DataFrame) -> list[str]:
    """The headline, from the claims table: at each budget of the axis, whether Ours's gain over CIT,
    over the compute-matched control and PBL's over CIT hold at the last stage (Holm-adjusted
    intervals and verdicts), then the abstract's other claims. Markdown blocks; [] without a budget axis."""
    budget_rows = claims_df[claims_df["section"].str.startswith("budget ")]
    if budget_rows.empty:
        return []
    last = max(int(c.rsplit(" ", 1)[1]) for c in budget_rows["claim"] if " at stage " in c)
    budgets_ = list(dict.fromkeys(budget_rows["section"].str.removeprefix("budget ")))
    lines = ["| at the last stage (stage {}) | ".format(last) + " | ".join(f"budget {b}" for b in budgets_) + " |",
             "|---|" + "---|" * len(budgets_)]
    sentences = []
    for start, name in HEADLINE_PAIRS.items():
        cells, held = [], []
        for b in budgets_:
            row = budget_rows[(budget_rows["section"] == f"budget {b}")
                              & (budget_rows["claim"] == f"{start} at stage {last}")]
            if row.empty:
                cells.append("—")
                continue
            cells.append(_claim_cell(row.iloc[0]))
            if row.iloc[0]["verdict (Holm)"] == "agrees":
                held.append(b)
        if set(cells) == {"—"}:
            continue
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        sentences.append(f"{name}: holds at {len(held)} of {len(budgets_)} budgets"
                         + (f" ({', '.join(held)})." if held else "."))
    others = []
    for section, start in HEADLINE_OTHERS:
        picked = claims_df[(claims_df["section"] == section) & claims_df["claim"].str.startswith(start)]
        if not picked.empty:
            row = picked.iloc[-1]   # the last stage's where there is one per stage
            others.append(f"- {section}: {row['claim']}: {_claim_cell(row)}")
    return ["**Does the gain survive adequate training and equal compute?** The budget axis (notebook 04b) "
            "trains the main comparison at every budget; in points, with the Holm-adjusted interval and "
            "verdict ('agrees': significant in the paper's direction):",
            "\n".join(lines), " ".join(sentences),
            *(["The abstract's other claims, at the main regime:", "\n".join(others)] if others else [])]


def glance(profile: str = "cpu") -> str:
    """The block: the main table's ACC row per method, then the claims' verdicts per section."""
    tables = reports_dir(profile) / "tables"
    claims = pd.read_csv(tables / "08_claims.csv")
    headline = finding(claims)   # first: does the gain survive training and equal compute
    main = pd.read_csv(tables / "04_domain_independent.csv")
    acc = [c for c in main.columns if c.endswith(" ACC")]
    lines = ["\n\n".join(headline), ""] if headline else []
    lines += [f"ACC at the main regime, every method ({'the main table, ' if headline else ''}mean±seed sd):", ""
              ] if headline else []
    lines += ["| method | " + " | ".join(c.removesuffix(" ACC") for c in acc) + " |",
              "|---|" + "---|" * len(acc)]
    several = main["backbone"].nunique() > 1 if "backbone" in main else False

    def label(r) -> str:
        return f"{NAMES.get(r.method, r.method)}" + (f" ({r.backbone})" if several else "")

    lines += [f"| {label(r)} | " + " | ".join(_cell(r[c]) for c in acc) + " |" for _, r in main.iterrows()]
    agree = claims["verdict (Holm)"] == "agrees"
    per_section = claims.assign(agree=agree).groupby("section", sort=False)["agree"].agg(["sum", "size"])
    sections = "; ".join(f"{s} {int(row['sum'])} of {int(row['size'])}" for s, row in per_section.iterrows())
    control = claims["claim"].str.contains("cit+matched", regex=False)
    lines += ["", f"**{int(agree.sum())} of the {len(claims)} claims checked here agree** after Holm's correction "
              f"(95% bootstrap intervals over seeds and facts): {sections}."
              + (f" {int(control.sum())} of the main-table claims set Ours against CIT trained on as many examples "
                 "(`cit+matched`), a control the paper does not run." if control.any() else "")]
    if (~agree).any():
        lines += ["", "Not reproduced (ours, in points, with its Holm-adjusted interval):", ""]
        lines += [f"- {r.section}: {r.claim}: {_claim_cell(r)}" for _, r in claims[~agree].iterrows()]
    costs_path = tables / "08_stage_costs.csv"
    if costs_path.is_file():
        costs = pd.read_csv(costs_path).sort_values("total_min", ascending=False)
        total = costs["total_min"].sum()
        top = "; ".join(f"{r.method} on {r.stream.replace('_', '-')}, {r.total_min:.0f}"
                        for r in costs.head(3).itertuples())
        lines += ["", f"**Cost.** The run's stages took {total:.0f} worker-minutes by their manifests "
                  f"(`reports/tables/08_stage_costs.md`), about {total / 2:.0f} minutes on the two 1-thread workers "
                  f"of a 2-core machine ({'within' if total <= COST_TARGET_MIN else 'over'} the target of "
                  f"{COST_TARGET_MIN} worker-minutes); the largest: {top}."]
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
