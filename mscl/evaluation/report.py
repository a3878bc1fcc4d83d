"""Tables and figures: written under the profile's reports folder, Markdown + CSV and PNG.

Every number in a report comes from saved run artifacts through these functions; nothing is typed in.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
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


def tensorboard_history(stage_dir: Path) -> list[dict]:
    """A stage's training log read back from its TensorBoard event files (``<stage>/tensorboard``,
    written by :func:`mscl.engine.training.train_lora`), as the Trainer's ``log_history``: one dict
    per logged step, ``{"step": ..., "loss": ..., "nll": ..., ...}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[int, dict] = {}
    for events in sorted((Path(stage_dir) / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                steps.setdefault(event.step, {"step": event.step})[tag.removeprefix("train/")] = event.value
    return [steps[step] for step in sorted(steps)]


def loss_curves(log_history: list[dict], ax=None, title: str = ""):
    """Plot the trainer's logged loss components (loss, nll, preference) against the optimizer step,
    each in its own colour and marker; where ``nll`` is the whole loss (no preference term, as in CIT)
    one line is drawn for both. Returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    logs = pd.DataFrame([h for h in log_history if "loss" in h and "step" in h])
    keys = [key for key in ("loss", "nll", "preference") if key in logs]
    labels = {key: key for key in keys}
    if "nll" in keys and np.allclose(logs["loss"], logs["nll"], equal_nan=True):
        keys.remove("nll")
        labels["loss"] = "loss (= nll)"
    styles = series_styles(keys, fixed=())
    for key in keys:
        ax.plot(logs["step"], logs[key], label=labels[key], markevery=max(1, len(logs) // 25), markersize=4,
                **styles[key])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (NLL: nats per answer token)")
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
                            sd: np.ndarray | None = None, digits: int = 1, cbar: bool = True):
    """Heatmap of an accuracy matrix (:func:`mscl.core.metrics.accuracy_matrix`, fractions) in percent,
    100 * R[k, j] written in each cell (``"62.5±1.3"`` with an across-seed ``sd`` of the same shape,
    also fractions), NaN cells blank; rows "after stage k", columns the domain whose facts are
    evaluated, both labelled with ``labels``; ``digits`` after the point, and a colour bar of its own
    unless ``cbar`` is False. Returns the Axes."""
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
            annotations[k, j] = f"{value:.{digits}f}"
            if sd_percent is not None and not np.isnan(sd_percent[k, j]):
                annotations[k, j] += f"±{sd_percent[k, j]:.{digits}f}"
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 1.1 * len(labels), 1.0 + 0.9 * len(labels)))
    sns.heatmap(percent, mask=np.isnan(percent), annot=annotations, fmt="", vmin=0, vmax=100,
                cmap="viridis", xticklabels=list(labels), yticklabels=list(labels), square=True,
                cbar=cbar, cbar_kws={"label": "ACC (%)"} if cbar else None, annot_kws={"fontsize": 8}, ax=ax)
    ax.set_xlabel("evaluated on: domain j's facts")
    ax.set_ylabel("after stage k")
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- figures
# Every figure a notebook saves (`save_figure(fig, <stem>, profile)`), by file stem, with what it shows.
# A stem built from parameters is written as its f-string template; :func:`figure_caption` resolves a
# saved file's stem against these.
FIGURES: dict[str, str] = {
    "02_pilot_sweep": "CIT's training budget sweep: stage-1 ACC of each setting against the rule's threshold, "
                      "then ACC and stale answers per stage, one panel per epoch count",
    "02_pilot_{method}": "the pilot method over the domain-independent stream at the picked budget: ACC, "
                         "stale answers, general knowledge and KRR per stage, ±1 sd over seeds",
    "03_{stream}_{method}_stage{stage}_loss": "one stage against the optimizer step: (a) the training loss and "
                                              "its NLL and preference parts, (b) the mean log-ratio of the "
                                              "aligned and the conflicting samples against the reference (PBL "
                                              "methods), (c) the gradient norm, and each term's where logged",
    "04b_budget_axis": "the budget axis: ACC and the stale share at stage 2 and the last stage against each "
                       "method's compute (log scale), one point per budget, 95% seed-interval bands",
    "04_answer_sources": "where each method's answers come from per stage (current, stale, neither), "
                         "domain-independent stream, ±1 sd over seeds",
    "05_cross_domain": "ACC and KGR per stage of the cross-domain stream, one line per method, ±1 sd over seeds",
    "05b_real_revisions": "ACC and KGR per stage of the real-revision stream (dated stages), one line per method, "
                          "±1 sd over seeds",
    "05_accuracy_matrix": "the cross-domain accuracy matrix R[k][j] per method: ACC after stage k on domain j's facts",
    "06_choices": "each design choice's settings against its default: ACC difference with a 95% CI",
    "07_retention": "KRR of stage-1 knowledge (95% interval) and accuracy on the general set (±1 sd over seeds) "
                    "per stage, one line per method",
    "jupyterlab": "a screenshot of JupyterLab with notebook 02 open (`python -m mscl.lab --screenshot`)",
}


def figure_caption(stem: str) -> str | None:
    """The :data:`FIGURES` caption of a saved figure's file stem: an exact key, else the first template
    key whose ``{placeholders}`` match it (``03_domain_independent_cit_stage1_loss``); None if none."""
    if stem in FIGURES:
        return FIGURES[stem]
    for template, caption in FIGURES.items():
        pattern = "".join(".+" if part.startswith("{") else re.escape(part)
                          for part in re.split(r"(\{[^}]*\})", template) if part)
        if re.fullmatch(pattern, stem):
            return caption
    return None


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
# methods keep one style in every figure, in this order; other series take the styles left
METHOD_ORDER = ("cit", "ours", "mocl", "flearning", "pbl", "cit+matched", "replay", "dpo", "osf")
# seaborn "colorblind" reordered so that the first series are the most distinct: blue, vermillion,
# green, purple, orange, sky blue, brown, grey, yellow, pink
_PALETTE_ORDER = (0, 3, 2, 4, 1, 9, 5, 7, 8, 6)


def series_styles(names: Sequence[str], fixed: Sequence[str] = METHOD_ORDER) -> dict[str, dict]:
    """A ``color`` and ``marker`` for each of ``names`` (for ``plot``/``errorbar`` keyword arguments):
    a name in ``fixed`` takes its position there, the others the lowest positions left, in order.
    Position i has colour i and marker i of ten (seaborn "colorblind" in :data:`_PALETTE_ORDER`, and
    :data:`MARKERS`), so up to ten series share neither; past ten, colour i mod 10 with marker
    (i + i // 10) mod 10 keeps every (colour, marker) pair distinct up to a hundred."""
    import seaborn as sns

    palette = [sns.color_palette("colorblind", 10)[i] for i in _PALETTE_ORDER]
    names = list(dict.fromkeys(names))
    taken = {name: fixed.index(name) for name in names if name in fixed}
    used = set(taken.values())
    free = (i for i in range(len(fixed) + len(names)) if i not in used)
    positions = {name: taken[name] if name in taken else next(free) for name in names}
    return {name: {"color": palette[i % 10], "marker": MARKERS[(i + i // 10) % len(MARKERS)]}
            for name, i in positions.items()}


def stage_axis(ax, stages: Sequence, label: str = "stage") -> None:
    """Make ``ax``'s x axis a stage axis: one integer tick per stage in ``stages``, a little room
    either side, and ``label``."""
    stages = sorted({int(s) for s in stages})
    ax.set_xticks(stages, [str(s) for s in stages])
    ax.set_xlim(stages[0] - 0.4, stages[-1] + 0.4)
    ax.set_xlabel(label)


def _error_bars(rows: pd.DataFrame, metric: str, prefer: str = "sd") -> tuple[np.ndarray | None, str]:
    """Error bars for ``rows[metric]`` and what they are: ``±1 sd`` from ``<metric>_sd``, or the
    interval ``<metric>_lo``..``<metric>_hi``, whichever ``prefer`` names ("sd" or "ci") when both
    exist; (None, "") when neither does or every value is NaN."""
    values = rows[metric].to_numpy(dtype=float)
    sd = (np.abs(rows[f"{metric}_sd"].to_numpy(dtype=float)), "±1 sd over seeds") if f"{metric}_sd" in rows else None
    ci = None
    if {f"{metric}_lo", f"{metric}_hi"} <= set(rows.columns):
        lo, hi = rows[f"{metric}_lo"].to_numpy(dtype=float), rows[f"{metric}_hi"].to_numpy(dtype=float)
        ci = (np.vstack([values - lo, hi - values]).clip(min=0), "95% interval")
    first, second = (ci, sd) if prefer == "ci" else (sd, ci)
    for bars in (first, second):
        if bars is not None and not np.all(np.isnan(bars[0])):
            return bars
    return None, ""


def _dodge(i: int, n: int, step: float = 0.07) -> float:
    """The x offset of series ``i`` of ``n``, so that error bars at one stage stand side by side."""
    return (i - (n - 1) / 2) * step


def stage_metrics_figure(table: pd.DataFrame, columns: dict[str, str], *, title: str = "",
                         ylabel: str = "% of evaluation items", prefer: str = "sd"):
    """One method's metrics per stage in one panel (a table of
    :func:`mscl.evaluation.tables.results_table`): a line per column of ``columns`` (column -> legend
    label), with its error bars (:func:`_error_bars`), on integer stage ticks. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    rows = table.sort_values("stage")
    styles = series_styles(list(columns), fixed=())
    kinds = set()
    for i, (column, label) in enumerate(columns.items()):
        yerr, kind = _error_bars(rows, column, prefer)
        kinds.add(kind)
        ax.errorbar(rows["stage"] + _dodge(i, len(columns)), rows[column], yerr=yerr, capsize=3, label=label,
                    **styles[column])
    stage_axis(ax, rows["stage"])
    ax.set_ylabel(ylabel)
    kinds.discard("")
    ax.legend(fontsize=8, title=f"bars: {', '.join(sorted(kinds))}" if kinds else None, title_fontsize=8)
    ax.set_title(title)
    return fig


def method_stage_figure(long: pd.DataFrame, metrics: dict[str, str], *, title: str = "", prefer: str = "sd",
                        stage_label: str = "stage", methods: Sequence[str] | None = None):
    """Metrics per stage for several methods (a long table, one row per method and stage): one panel
    per metric of ``metrics`` (column -> y-axis label), a line per method with its error bars
    (:func:`_error_bars`, named in the panel's title), methods side by side at each stage, on integer
    stage ticks and one legend. Returns the Figure."""
    import matplotlib.pyplot as plt

    methods = list(pd.unique(long["method"])) if methods is None else list(methods)
    styles = series_styles(methods)
    fig, axes = plt.subplots(1, len(metrics), figsize=(1 + 4.6 * len(metrics), 3.9), squeeze=False,
                             layout="constrained")
    for ax, (metric, label) in zip(axes[0], metrics.items()):
        kinds = set()
        for i, method in enumerate(methods):
            rows = long[long["method"] == method].sort_values("stage")
            yerr, kind = _error_bars(rows, metric, prefer)
            kinds.add(kind)
            ax.errorbar(rows["stage"] + _dodge(i, len(methods)), rows[metric], yerr=yerr, capsize=3,
                        label=method, **styles[method])
        stage_axis(ax, long["stage"], stage_label)
        ax.set_ylabel(label)
        kinds.discard("")
        ax.set_title(f"bars: {', '.join(sorted(kinds))}" if kinds else "no interval (one seed)", fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(methods), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _stage_columns(table: pd.DataFrame, metric: str) -> dict[int, str]:
    """``{stage: column}`` of a wide table's ``"<metric> s<stage>"`` columns, or of its
    ``"val <metric> s<stage>"`` ones (the numbers read on the validation split)."""
    found = {}
    for column in table.columns:
        match = re.fullmatch(rf"(?:val )?{re.escape(metric)} s(\d+)", str(column))
        if match:
            found[int(match.group(1))] = column
    return dict(sorted(found.items()))


def _split_word(table: pd.DataFrame) -> str:
    """"validation " where a wide table's ACC columns are read on the validation split, else ""."""
    return "validation " if any(str(c).startswith("val ") for c in _stage_columns(table, "ACC").values()) else ""


def pilot_sweep_figure(sweep: pd.DataFrame, threshold: float, *, title: str = ""):
    """The budget sweep (:func:`mscl.evaluation.picks.sweep_table`) as small multiples. Left, (a):
    each setting's stage-1 ACC in budget order against the rule's ``threshold``, the settings that
    reach it coloured and the first of them (the rule's pick) marked. Right, one column per epoch
    count: (b) ACC on the current answers and (c) the stale-answer rate per stage, a line per
    (learning rate, target modules) with the same style in every panel. Columns are ``ACC s<n>`` and
    ``stale s<n>``, or the same with a ``val`` prefix (then the axes say validation). Returns the
    Figure."""
    import matplotlib.pyplot as plt

    acc, stale = _stage_columns(sweep, "ACC"), _stage_columns(sweep, "stale")
    split = _split_word(sweep)
    epochs = list(pd.unique(sweep["epochs"]))
    names = {g: f"lr {g[0]:g}, {g[1]}" for g in dict.fromkeys(zip(sweep["learning_rate"], sweep["targets"]))}
    styles = series_styles(list(names.values()), fixed=())
    fig = plt.figure(figsize=(4.8 + 3.3 * len(epochs), 6.6), layout="constrained")
    grid = fig.add_gridspec(2, 1 + len(epochs), width_ratios=[1.4] + [1] * len(epochs))
    _sweep_bars(fig.add_subplot(grid[:, 0]), sweep, acc[min(acc)], threshold, f"stage-{min(acc)} {split}ACC (%)")
    tops, bottoms = [], []
    for col, epoch in enumerate(epochs, start=1):
        top = fig.add_subplot(grid[0, col], sharey=tops[0] if tops else None)
        bottom = fig.add_subplot(grid[1, col], sharex=top, sharey=bottoms[0] if bottoms else None)
        tops.append(top)
        bottoms.append(bottom)
        rows = sweep[sweep["epochs"] == epoch]
        for (lr, targets), name in names.items():
            row = rows[(rows["learning_rate"] == lr) & (rows["targets"] == targets)]
            if len(row):
                top.plot(list(acc), row[list(acc.values())].iloc[0], label=name, **styles[name])
                bottom.plot(list(stale), row[list(stale.values())].iloc[0], label=name, **styles[name])
        top.set_title(f"{epoch:g} epoch{'' if epoch == 1 else 's'}", fontsize=10)
        stage_axis(top, list(acc), "")
        stage_axis(bottom, list(acc))
        if col > 1:
            top.tick_params(labelleft=False)
            bottom.tick_params(labelleft=False)
    tops[0].set_ylim(0, 100)
    tops[0].set_ylabel(f"(b) {split}ACC, current answers (%)")
    bottoms[0].set_ylabel(f"(c) {split}stale answers (%)")
    most_stale = np.nanmax(sweep[list(stale.values())].to_numpy(dtype=float), initial=0.0)
    bottoms[0].set_ylim(0, max(5.0, 1.1 * most_stale))
    handles, labels = tops[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(names), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _sweep_bars(ax, sweep: pd.DataFrame, column: str, threshold: float, xlabel: str) -> None:
    """Panel (a) of :func:`pilot_sweep_figure`: ``column`` (stage-1 ACC) per setting, budget order
    top down, against the rule's threshold."""
    import seaborn as sns

    palette = sns.color_palette("colorblind")
    values = sweep[column].to_numpy(dtype=float)
    reached = values >= threshold
    y = np.arange(len(sweep))
    ax.barh(y[reached], values[reached], color=palette[0], label="reaches the threshold")
    ax.barh(y[~reached], values[~reached], color=palette[7], label="below it")
    ax.axvline(threshold, color="black", linestyle="--", label=f"the rule's threshold, {threshold:g}%")
    if reached.any():
        pick = int(np.argmax(reached))
        ax.annotate("◀ the rule's pick", (max(values[pick], threshold), pick), xytext=(5, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, list(sweep["setting"]))
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_title("(a) stage 1 learned, lowest budget on top", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")


def accuracy_matrix_figure(matrices: dict[str, Sequence[np.ndarray]], labels: Sequence[str], *, title: str = ""):
    """One :func:`accuracy_matrix_heatmap` per method of ``matrices`` (method -> one R per training
    seed): the mean over seeds in whole points, with the across-seed sd where there are several
    seeds, and one colour bar for all panels. Returns the Figure."""
    import matplotlib.pyplot as plt

    n = len(labels)
    fig, axes = plt.subplots(1, len(matrices), figsize=(1.0 + (2.2 + 0.75 * n) * len(matrices), 2.0 + 0.75 * n),
                             squeeze=False, layout="constrained")
    for ax, (method, per_seed) in zip(axes[0], matrices.items()):
        stack = np.stack(per_seed)
        with warnings.catch_warnings():  # the cells above the diagonal are NaN in every seed
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stack, axis=0)
            sd = np.nanstd(stack, axis=0, ddof=1) if len(per_seed) > 1 else None
        accuracy_matrix_heatmap(mean, labels, ax=ax, title=method, sd=sd, digits=0,
                                cbar=False)
        ax.tick_params(axis="x", labelrotation=40)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
        if ax is not axes[0, 0]:
            ax.set_ylabel("")
    mappable = axes[0, 0].collections[0]
    fig.colorbar(mappable, ax=list(axes[0]), label="ACC (%)", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def choice_figure(tables: dict[str, pd.DataFrame], *, defaults: dict[str, str], titles: dict[str, str] | None = None):
    """The design choices (:func:`mscl.evaluation.picks.choice_table`, one table per study): one panel
    per study, each setting's ACC difference against the study's default (``vs default``, points) with
    its 95% interval (``lo``..``hi``); the default is the open marker on the zero line, the setting the
    profile trains with (``profile's``) is starred in its tick label. Returns the Figure."""
    import matplotlib.pyplot as plt

    titles = titles or {}
    fig, axes = plt.subplots(1, len(tables), figsize=(0.6 + 4.8 * len(tables), 3.6), squeeze=False,
                             layout="constrained")
    style = series_styles(["setting"], fixed=())["setting"]
    for ax, (study, table) in zip(axes[0], tables.items()):
        x = np.arange(len(table))
        point = table["vs default"].to_numpy(dtype=float)
        errors = np.vstack([point - table["lo"].to_numpy(dtype=float),
                            table["hi"].to_numpy(dtype=float) - point]).clip(min=0)
        is_default = (table["setting"] == defaults[study]).to_numpy()
        ax.axhline(0, color="grey", lw=0.8)
        ax.errorbar(x[~is_default], point[~is_default], yerr=errors[:, ~is_default], linestyle="none", capsize=4,
                    label="setting, 95% interval", **style)
        ax.plot(x[is_default], point[is_default], linestyle="none", markerfacecolor="white",
                color=style["color"], marker=style["marker"], label="the default")
        used = table["profile's"].astype(bool).to_numpy() if "profile's" in table else np.zeros(len(table), bool)
        ax.set_xticks(x, [f"{s} *" if u else str(s) for s, u in zip(table["setting"], used)])
        ax.tick_params(axis="x", labelrotation=20)
        ax.set_xlabel("setting (* the profile's)")
        ax.set_ylabel(f"{_split_word(table)}ACC − ACC({defaults[study]}) (points)")
        ax.set_title(titles.get(study, study), fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    return fig


def column_formats(table: pd.DataFrame, formats: dict[str, str], default: str = ".2f") -> tuple[str, ...]:
    """A number format per column of ``table``, for :func:`save_table`'s ``floatfmt`` (the Markdown
    writer takes one format per column): ``formats[column]`` where given, e.g. ``"g"`` to print a
    learning rate as ``0.0005`` and an epoch count as ``4``, else ``default``. The table itself, and
    so its CSV, keeps its numbers."""
    return tuple(formats.get(column, default) for column in table.columns)
