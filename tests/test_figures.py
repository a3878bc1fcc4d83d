"""The report's figures read on their own: every saved figure has a caption in ``report.FIGURES``, stage
axes carry integer ticks, and no two series of one panel share a colour and a marker. Each figure
function is drawn from a small synthetic table, as the notebooks draw it from a run's."""
from __future__ import annotations

import json
import re
from itertools import product

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mscl.common.paths import REPO_ROOT  # noqa: E402
from mscl.evaluation import report  # noqa: E402

SAVE_FIGURE = re.compile(r"""save_figure\(\s*[^,]+,\s*(f?)(["'])(.+?)\2""")


def _saved_figure_names() -> list[tuple[str, bool]]:
    """(name, is an f-string) of every ``save_figure(fig, "<name>", ...)`` in the notebooks' code cells
    and in the package."""
    sources = []
    for path in sorted((REPO_ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        cells = json.loads(path.read_text())["cells"]
        sources += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    sources += [path.read_text() for path in sorted((REPO_ROOT / "mscl").rglob("*.py"))]
    return [(m.group(3), m.group(1) == "f") for text in sources for m in SAVE_FIGURE.finditer(text)]


def _template(name: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", name)


def test_every_saved_figure_has_a_caption():
    names = _saved_figure_names()
    assert len(names) >= 8, names  # the scan finds the notebooks' figures
    templates = {_template(key) for key in report.FIGURES}
    missing = [name for name, formatted in names
               if (_template(name) not in templates if formatted else name not in report.FIGURES)]
    assert not missing, f"figures without a caption in mscl.evaluation.report.FIGURES: {missing}"
    assert all(caption and "\n" not in caption for caption in report.FIGURES.values())


def test_every_committed_figure_has_a_caption():
    stems = [path.stem for path in sorted((REPO_ROOT / "reports" / "figures").glob("*.png"))]
    assert not [stem for stem in stems if report.figure_caption(stem) is None]
    assert report.figure_caption("03_cross_domain_ours_stage7_loss") == report.FIGURES[
        "03_{stream}_{method}_stage{stage}_loss"]
    assert report.figure_caption("02_pilot_sweep") == report.FIGURES["02_pilot_sweep"]
    assert report.figure_caption("99_nothing") is None


# --------------------------------------------------------------------------- what every figure must do
def _series_key(artist) -> tuple | None:
    """(colour, marker, marker face) of a legend entry's artist: what tells two series apart."""
    if isinstance(artist, ErrorbarContainer):
        artist = artist.lines[0]
    if isinstance(artist, Line2D):
        return (to_hex(artist.get_color()), artist.get_marker(), to_hex(artist.get_markerfacecolor()))
    if isinstance(artist, BarContainer):
        return (to_hex(artist.patches[0].get_facecolor()), "bar", "")
    return None


def assert_reads_at_a_glance(fig) -> None:
    """Every stage axis has integer ticks only; within one axes no two labelled series, and no two
    marked lines, share colour and marker."""
    fig.canvas.draw()
    for ax in fig.axes:
        if ax.get_xlabel().startswith("stage"):
            ticks = ax.get_xticks()
            assert len(ticks) and np.allclose(ticks, np.round(ticks)), (ax.get_title(), ticks)
            for label in ax.get_xticklabels():
                assert re.fullmatch(r"-?\d+", label.get_text()), (ax.get_title(), label.get_text())
        handles, labels = ax.get_legend_handles_labels()
        keys = [_series_key(h) for h in handles]
        keys = [k for k in keys if k is not None]
        assert len(keys) == len(set(keys)), (ax.get_title(), list(zip(labels, keys)))
        caps = {id(cap) for c in ax.containers if isinstance(c, ErrorbarContainer) for cap in c.lines[1]}
        marked = [_series_key(line) for line in ax.get_lines()
                  if line.get_marker() not in ("None", "", None) and id(line) not in caps]
        assert len(marked) == len(set(marked)), (ax.get_title(), marked)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- synthetic tables
def _sweep(epochs=(2, 4, 8), rates=(5e-4, 2e-3), targets=("attention", "all_linear"), stages=5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for e, lr, t in product(epochs, rates, targets):
        row = {"setting": f"e{e}-lr{lr:g}-{t}", "epochs": float(e), "learning_rate": lr, "targets": t}
        row |= {f"ACC s{s}": float(rng.uniform(0, 100)) for s in range(1, stages + 1)}
        row |= {f"stale s{s}": float(rng.uniform(0, 25)) for s in range(2, stages + 1)}
        rows.append(row)
    return pd.DataFrame(rows)


def _long(methods=("cit", "mocl", "flearning", "ours"), stages=(1, 2, 3, 4, 5)) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for method, stage in product(methods, stages):
        krr = float(rng.uniform(40, 100))
        rows.append({"method": method, "stage": stage, "ACC": float(rng.uniform(0, 100)),
                     "ACC_sd": float(rng.uniform(0, 5)), "KGR": float(rng.uniform(0, 100)), "KGR_sd": np.nan,
                     "stale": float(rng.uniform(0, 20)), "stale_sd": float(rng.uniform(0, 3)),
                     "ACC_general": float(rng.uniform(0, 50)), "ACC_general_sd": float(rng.uniform(0, 3)),
                     "KRR": krr, "KRR_sd": 5.0, "KRR_lo": krr - 10, "KRR_hi": krr + 10, "seeds": 3})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the figures
def test_pilot_sweep_is_small_multiples_by_epochs():
    sweep = _sweep()
    fig = report.pilot_sweep_figure(sweep, 60.0, title="sweep")
    assert_reads_at_a_glance(fig)
    bars, *panels = fig.axes
    assert len(panels) == 6  # (b) and (c) for each of 2, 4 and 8 epochs
    assert [ax.get_title() for ax in panels[::2]] == ["2 epochs", "4 epochs", "8 epochs"]
    assert all(len(ax.get_lines()) == 4 for ax in panels)  # learning rate x target modules
    assert [t.get_text() for t in bars.get_yticklabels()] == list(sweep["setting"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "lr 0.0005, attention", "lr 0.0005, all_linear", "lr 0.002, attention", "lr 0.002, all_linear"]
    for ax in panels:  # the stale row shares the stage axis of the ACC row
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4", "5"]
    # the smoke profile's sweep: one learning rate, one module set, two epoch counts
    assert_reads_at_a_glance(report.pilot_sweep_figure(_sweep((1, 2), (2e-3,), ("attention",), 2), 60.0))
    # read on the validation split: "val ACC s1", ... and the axes say so
    val = _sweep().rename(columns=lambda c: f"val {c}" if c.startswith(("ACC s", "stale s")) else c)
    fig = report.pilot_sweep_figure(val, 60.0)
    assert_reads_at_a_glance(fig)
    assert fig.axes[0].get_xlabel() == "stage-1 validation ACC (%)"
    assert fig.axes[1].get_ylabel() == "(b) validation ACC, current answers (%)"
    assert all(len(ax.get_lines()) == 4 for ax in fig.axes[1:])


def test_stage_metrics_figure_draws_each_metric_with_its_sd():
    table = _long(methods=("cit",))
    columns = {"ACC": "ACC", "stale": "stale", "ACC_general": "general", "KRR": "KRR"}
    fig = report.stage_metrics_figure(table, columns, title="cit")
    assert_reads_at_a_glance(fig)
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.containers] == list(columns.values())
    assert all(c.has_yerr for c in ax.containers)
    assert ax.get_legend().get_title().get_text() == "bars: ±1 sd over seeds"


def test_method_stage_figure_one_panel_per_metric_and_the_interval_it_draws():
    long = _long()
    fig = report.method_stage_figure(long, {"KRR": "KRR (%)", "ACC_general": "general (%)"}, prefer="ci")
    assert_reads_at_a_glance(fig)
    krr, general = fig.axes
    assert (krr.get_title(), general.get_title()) == ("bars: 95% interval", "bars: ±1 sd over seeds")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["cit", "mocl", "flearning", "ours"]
    # a method keeps its style in every figure, whatever the order of the table
    other = report.method_stage_figure(long.iloc[::-1], {"ACC": "ACC (%)"})
    assert_reads_at_a_glance(other)
    styles = {c.get_label(): _series_key(c) for ax in (krr, other.axes[0]) for c in ax.containers}
    assert len(styles) == 4
    # KGR_sd is NaN throughout: no bars, said so
    assert report.method_stage_figure(long, {"KGR": "KGR (%)"}).axes[0].get_title() == "no interval (one seed)"


def test_loss_curves_draw_nll_once_when_it_is_the_whole_loss():
    cit = [{"step": s, "loss": 1.0 / s, "nll": 1.0 / s} for s in range(1, 30)]
    ax = report.loss_curves(cit, title="cit")
    assert_reads_at_a_glance(ax.figure)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss (= nll)"]
    pbl = [{"step": s, "loss": 1.5 / s, "nll": 1.0 / s, "preference": 0.5 / s} for s in range(1, 30)]
    ax = report.loss_curves(pbl)
    assert_reads_at_a_glance(ax.figure)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "nll", "preference"]
    assert np.allclose(ax.get_xticks(), np.round(ax.get_xticks()))


def test_choice_figure_marks_the_default_and_the_profiles_setting():
    table = pd.DataFrame({"setting": ["a", "b", "c"], "profile's": [False, True, False],
                          "vs default": [0.0, 5.0, -2.0], "lo": [0.0, 1.0, -6.0], "hi": [0.0, 9.0, 1.0]})
    fig = report.choice_figure({"study": table, "other": table}, defaults={"study": "a", "other": "c"},
                               titles={"study": "study: pbl at stage 3"})
    assert_reads_at_a_glance(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b *", "c"]
    assert ax.get_title() == "study: pbl at stage 3" and fig.axes[1].get_title() == "other"
    assert ax.get_ylabel() == "ACC − ACC(a) (points)"
    val = table.assign(**{"val ACC s3": [10.0, 15.0, 8.0]})
    fig = report.choice_figure({"study": val}, defaults={"study": "a"})
    assert fig.axes[0].get_ylabel() == "validation ACC − ACC(a) (points)"


def test_accuracy_matrix_figure_prints_whole_points_and_one_colour_bar():
    R = np.array([[0.904, np.nan], [0.612, 0.8]])
    fig = report.accuracy_matrix_figure({"cit": [R, R + 0.02], "ours": [R]}, ["medicine", "law"], title="R")
    assert_reads_at_a_glance(fig)
    cit, ours, colour_bar = fig.axes
    assert sorted(t.get_text() for t in cit.texts) == ["62±1", "81±1", "91±1"]
    assert sorted(t.get_text() for t in ours.texts) == ["61", "80", "90"]  # one seed: no sd
    assert colour_bar.get_ylabel() == "ACC (%)"


def test_answer_source_figure_has_integer_stage_ticks():
    table = pd.DataFrame({"method": ["cit"] * 3 + ["ours"] * 3, "stage": [1, 2, 3] * 2,
                          "current": [60.0, 20, 25, 60, 40, 45], "stale": [0.0, 15, 10, 0, 5, 5],
                          "neither": [40.0, 65, 65, 40, 55, 50]})
    assert_reads_at_a_glance(report.answer_source_figure(table))


# --------------------------------------------------------------------------- the helpers
def test_series_styles_never_repeat_a_colour_and_marker():
    names = [f"s{i}" for i in range(30)]
    styles = report.series_styles(names, fixed=())
    pairs = [(to_hex(s["color"]), s["marker"]) for s in styles.values()]
    assert len(set(pairs)) == 30
    first_ten = list(styles.values())[:10]
    assert len({to_hex(s["color"]) for s in first_ten}) == 10 and len({s["marker"] for s in first_ten}) == 10
    # methods keep their style in any company
    assert report.series_styles(["ours", "x"])["ours"] == report.series_styles(["cit", "mocl", "ours"])["ours"]
    assert report.series_styles(["x", "cit"])["x"] != report.series_styles(["x", "cit"])["cit"]


def test_stage_axis_ticks_every_stage_and_nothing_between():
    _, ax = plt.subplots()
    ax.plot([2, 3, 4, 5], [1, 2, 3, 4])
    report.stage_axis(ax, [5, 2, 3, 4, 3])
    assert list(ax.get_xticks()) == [2, 3, 4, 5]
    assert ax.get_xlabel() == "stage"


def test_column_formats_print_learning_rates_at_their_precision():
    sweep = _sweep(epochs=(2,), rates=(5e-4, 2e-3), targets=("attention",))
    formats = report.column_formats(sweep, {"epochs": "g", "learning_rate": "g", "absent": "g"})
    assert len(formats) == len(sweep.columns) and formats[1:3] == ("g", "g") and set(formats[3:]) == {".2f"}
    markdown = sweep.to_markdown(index=False, floatfmt=formats)  # what save_table writes
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()[2:]]
    assert [(r[1], r[2]) for r in rows] == [("2", "0.0005"), ("2", "0.002")]
    assert rows[0][4] == f"{sweep['ACC s1'].iloc[0]:.2f}"
