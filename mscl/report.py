"""Tables and figures: written under the profile's reports folder, Markdown + CSV and PNG.

Every number in a report comes from saved run artifacts through these functions; nothing is typed in.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mscl.io import atomic_write_text
from mscl.paths import reports_dir


def save_table(df: pd.DataFrame, name: str, profile: str, floatfmt: str = ".2f") -> Path:
    """Write ``tables/<name>.md`` and ``tables/<name>.csv``; returns the Markdown path."""
    folder = reports_dir(profile) / "tables"
    atomic_write_text(folder / f"{name}.csv", df.to_csv(index=False, float_format="%.4f"))
    return atomic_write_text(folder / f"{name}.md", df.to_markdown(index=False, floatfmt=floatfmt) + "\n")


def save_figure(fig, name: str, profile: str) -> Path:
    """Write ``figures/<name>.png`` (dpi 150, tight)."""
    folder = reports_dir(profile) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    tmp = folder / f".{name}.tmp.png"
    fig.savefig(tmp, dpi=150, bbox_inches="tight")
    tmp.replace(path)
    return path


def loss_curves(log_history: list[dict], ax=None, title: str = ""):
    """Plot the trainer's logged loss components (loss, nll, preference) against the step."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    logs = pd.DataFrame([h for h in log_history if "loss" in h and "step" in h])
    for key in ("loss", "nll", "preference"):
        if key in logs:
            ax.plot(logs["step"], logs[key], label=key)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return ax


def main_table(long: pd.DataFrame, baseline: str = "cit", metrics: tuple[str, ...] = ("KGR", "ACC")) -> pd.DataFrame:
    """The paper's layout: one row per (backbone, method), for every stage each metric in percent with
    its change against ``baseline`` at the same stage and backbone, e.g. ``"62.5 (+12.0)"``; with
    several training seeds (a ``<metric>_sd`` column) the mean and the across-seed standard
    deviation, e.g. ``"62.5±1.3 (+12.0)"``."""
    rows = []
    for (backbone, method), group in long.groupby(["backbone", "method"], sort=False):
        base = long[(long["backbone"] == backbone) & (long["method"] == baseline)].set_index("stage")
        row = {"backbone": backbone, "method": method}
        for _, r in group.sort_values("stage").iterrows():
            for metric in metrics:
                if r.get("trained_by", method) != method:  # a shared stage: the baseline's, as in the paper
                    row[f"stage {r['stage']} {metric}"] = "—"
                    continue
                cell = f"{r[metric]:.1f}"
                if pd.notna(r.get(f"{metric}_sd", float("nan"))):
                    cell += f"±{r[f'{metric}_sd']:.1f}"
                if method != baseline and r["stage"] in base.index:
                    cell += f" ({r[metric] - base.loc[r['stage'], metric]:+.1f})"
                row[f"stage {r['stage']} {metric}"] = cell
        rows.append(row)
    return pd.DataFrame(rows)
