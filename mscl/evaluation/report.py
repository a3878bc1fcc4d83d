"""Tables and figures: written under the profile's reports folder, Markdown + CSV and PNG.

Every number in a report comes from saved run artifacts through these functions; nothing is typed in.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mscl.common.outputs import save_figure, save_table  # noqa: F401  (the notebooks' writers)
from mscl.common.paths import REPO_ROOT, artifacts_dir
from mscl.core.metrics import ANSWER_SOURCES

# the profile a notebook opens on: cpu (the committed run's stages, reused after `make reproduce`);
# `make test` sets smoke, and papermill's parameters override both
PROFILE_ENV = "MSCL_PROFILE"


def profile_status(profile: str) -> str:
    """A notebook's first output: the profile it runs and whether that profile's stages are already
    trained (then they are reused) or would be trained now, and how to get them otherwise."""
    runs = artifacts_dir() / "runs" / profile
    finished = len(list(runs.glob("**/manifest.json"))) if runs.is_dir() else 0
    where = runs.relative_to(REPO_ROOT) if runs.is_relative_to(REPO_ROOT) else runs
    if finished:
        return f"profile {profile}: {finished} finished stages under {where} are reused (nothing is trained twice)"
    if profile == "smoke":
        return ("profile smoke: the tiny random model, seconds a stage; a check that the code runs, not results "
                f"(set {PROFILE_ENV}=cpu or profile = \"cpu\" for the real run)")
    return (f"profile {profile}: no finished stages under {where} yet, so this notebook trains the ones it needs "
            "now (hours on 2 cores). Run `make reproduce` first, which trains every stage two at a time, "
            "or set profile = \"smoke\" in the parameters cell for a quick look.")


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


def answer_source_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-item answer sources (columns ``method``, ``stage``, ``seed``, ``source`` in
    :data:`~mscl.core.metrics.ANSWER_SOURCES`) to one row per (method, stage): for each source s,

    s = mean over seeds of 100 * #(items of the seed with source s) / #(items of the seed)

    and ``s_sd``, the across-seed standard deviation of those shares (ddof=1, NaN with one seed),
    plus ``n_seeds``. Methods keep their first-seen order, stages are sorted.
    """
    unknown = set(rows["source"]) - set(ANSWER_SOURCES)
    if unknown:
        raise ValueError(f"unknown answer sources {sorted(unknown)}; expected {ANSWER_SOURCES}")
    shares = (rows.groupby(["method", "stage", "seed"], sort=False)["source"]
              .value_counts(normalize=True).unstack(fill_value=0.0)
              .reindex(columns=list(ANSWER_SOURCES), fill_value=0.0) * 100)
    by_stage = shares.groupby(level=["method", "stage"], sort=False)
    table = pd.concat([by_stage.mean(), by_stage.std(ddof=1).add_suffix("_sd"),
                       by_stage.size().rename("n_seeds")], axis=1).reset_index()
    order = {method: i for i, method in enumerate(pd.unique(rows["method"]))}
    table = table.sort_values(["method", "stage"], key=lambda c: c.map(order) if c.name == "method" else c)
    return table.reset_index(drop=True).rename_axis(columns=None)


def _source_colours() -> dict[str, tuple]:
    """Fixed colour-blind-safe colours (seaborn "colorblind"): current green, stale orange, neither grey."""
    import seaborn as sns

    palette = sns.color_palette("colorblind")
    return dict(zip(ANSWER_SOURCES, (palette[2], palette[1], palette[7])))


def answer_source_figure(table: pd.DataFrame, *, methods: Sequence[str] | None = None, title: str = ""):
    """Stacked bars of where the answers come from (:func:`answer_source_table`): one panel per
    method (``methods``, default the table's in first-seen order), one bar per stage, segments
    ``current`` / ``stale`` / ``neither`` from the bottom, in percent on a shared 0-100 axis. With
    ``<source>_sd`` columns each segment carries a ±sd whisker at its top (the top segment's, on 100,
    shows its lower half). Returns the Figure."""
    import matplotlib.pyplot as plt

    methods = list(pd.unique(table["method"])) if methods is None else list(methods)
    missing = [m for m in methods if m not in set(table["method"])]
    if missing:
        raise ValueError(f"methods {missing} are not in the table")
    colours = _source_colours()
    fig, axes = plt.subplots(1, len(methods), sharey=True, squeeze=False, layout="constrained",
                             figsize=(1.2 + 2.8 * len(methods), 3.6))
    for ax, method in zip(axes[0], methods):
        rows = table[table["method"] == method].sort_values("stage")
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for source in ANSWER_SOURCES:
            height = rows[source].to_numpy(dtype=float)
            sd = rows[f"{source}_sd"].to_numpy(dtype=float) if f"{source}_sd" in rows else None
            ax.bar(x, height, bottom=bottom, width=0.7, color=colours[source], label=source,
                   yerr=sd, error_kw={"ecolor": "black", "elinewidth": 1, "capsize": 3})
            bottom += height
        ax.set_xticks(x, [str(stage) for stage in rows["stage"]])
        ax.set_xlabel("stage")
        ax.set_title(method)
    axes[0, 0].set_ylim(0, 100)
    axes[0, 0].set_ylabel("% of evaluation items")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(ANSWER_SOURCES), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def accuracy_matrix_heatmap(R: np.ndarray, labels: Sequence[str], *, ax=None, title: str = "",
                            sd: np.ndarray | None = None):
    """Heatmap of an accuracy matrix (:func:`mscl.core.metrics.accuracy_matrix`, fractions) in percent,
    100 * R[k, j] written in each cell (``"62.5±1.3"`` with an across-seed ``sd`` of the same shape,
    also fractions), NaN cells blank; rows "after stage k", columns the domain whose facts are
    evaluated, both labelled with ``labels``. Returns the Axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    percent = 100 * np.asarray(R, dtype=np.float64)
    if percent.ndim != 2 or percent.shape[0] != percent.shape[1] or len(labels) != percent.shape[0]:
        raise ValueError(f"R must be square with one label per stage, got shape {percent.shape} "
                         f"and {len(labels)} labels")
    sd_percent = None if sd is None else 100 * np.asarray(sd, dtype=np.float64)
    if sd_percent is not None and sd_percent.shape != percent.shape:
        raise ValueError(f"sd has shape {sd_percent.shape}, R has {percent.shape}")
    annotations = np.full(percent.shape, "", dtype=object)
    for (k, j), value in np.ndenumerate(percent):
        if not np.isnan(value):
            annotations[k, j] = f"{value:.1f}"
            if sd_percent is not None and not np.isnan(sd_percent[k, j]):
                annotations[k, j] += f"±{sd_percent[k, j]:.1f}"
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 1.1 * len(labels), 1.0 + 0.9 * len(labels)))
    sns.heatmap(percent, mask=np.isnan(percent), annot=annotations, fmt="", vmin=0, vmax=100,
                cmap="viridis", xticklabels=list(labels), yticklabels=list(labels), square=True,
                cbar_kws={"label": "ACC (%)"}, ax=ax)
    ax.set_xlabel("evaluated on: domain j's facts")
    ax.set_ylabel("after stage k")
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title)
    return ax
