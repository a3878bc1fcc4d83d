"""The report, ``reports/README.md``, written from what notebooks 02-07 saved (notebook 08 calls it).

:class:`~mscl.evaluation.claim_family.ReportInputs` reads a profile's params, tables, predictions
and the paper's tables; :func:`~mscl.evaluation.claim_family.paper_claims` lists every claim the
runs can check (each with our difference, its interval and p-value); :func:`ablation_tables`, :func:`main_tables` and
:func:`evaluation_modes_table` build the tables beside the paper's; :func:`deviations` and
:func:`discussion` are the prose computed from the params and the tables; :func:`write_report`
assembles the file, one function per section. Nothing in the report is typed in: every number is
read from saved run artifacts or from the paper's transcribed CSVs.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mscl.common.io import atomic_write_text, read_json
from mscl.common.provenance import describe
from mscl.engine.models import DEFAULT_SYSTEM_PROMPT
from mscl.evaluation import claims, glance, picks, report
from mscl.evaluation.claim_family import ReportInputs
from mscl.evaluation.tables import evaluation_modes
from mscl.pipeline import choices, verify


def markdown(table: pd.DataFrame) -> str:
    """``table`` as Markdown, counts as whole numbers and every other number to one decimal."""
    whole = {column: "Int64" for column in table.columns if column in ("stage", "round", "n")}
    return table.astype(whole).to_markdown(index=False, floatfmt=".1f")


def main_tables(inputs: ReportInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The main table, ours and the paper's in the same layout (the paper's saved as a table)."""
    ours_main = report.main_table(inputs.table("04_domain_independent_long"), baseline="cit").fillna("—")
    paper_main = report.main_table(claims.paper_main_table(inputs.paper["main"]), baseline="CIT").fillna("—")
    report.save_table(paper_main, "08_paper_domain_independent", inputs.profile)
    return ours_main, paper_main


def ablation_tables(inputs: ReportInputs) -> dict[str, pd.DataFrame]:
    """Each ablation table of notebook 06 with the paper's row beside each of our variants."""
    tables = {}
    for name in inputs.notebook_params["06_ablations"].tables:
        ours = inputs.table(f"06_ablation_{name}")
        labels = claims.PAPER_ABLATION_ROWS.get(name, {})
        paper_rows = inputs.paper["ablations"]
        paper_rows = paper_rows[paper_rows["ablation"] == claims.PAPER_ABLATION_NAMES.get(name, name)]
        paper_rows = paper_rows.set_index("variant")
        ours["paper row"] = [labels.get(m, "—") for m in ours["method"]]
        ours["paper ACC"] = [paper_rows["ACC"].get(labels.get(m), float("nan")) for m in ours["method"]]
        ours["paper KGR"] = [paper_rows["KGR"].get(labels.get(m), float("nan")) for m in ours["method"]]
        tables[name] = ours[["method", "ACC", "KGR", "ACC_edited", "ACC_general", "paper row", "paper ACC",
                             "paper KGR"]]
        report.save_table(tables[name], f"08_ablation_{name}_vs_paper", inputs.profile)
    return tables


def evaluation_modes_table(inputs: ReportInputs) -> pd.DataFrame:
    """Each main-table method's last stage under both evaluation modes (mean and seed sd), saved."""
    main_params = inputs.notebook_params["04_domain_independent"]
    modes = evaluation_modes(inputs.profile, main_params.stream, main_params.methods, inputs.stages[-1],
                             params=inputs.training, backbone=inputs.backbone)
    table = modes.pivot_table(index="method", columns="mode", values="ACC", aggfunc=["mean", "std"], sort=False)
    table.columns = [f"ACC {mode} ({'mean' if agg == 'mean' else 'seed sd'})" for agg, mode in table.columns]
    table = table.reset_index()
    report.save_table(table, "08_evaluation_modes", inputs.profile)
    return table


def side_tables(inputs: ReportInputs) -> tuple[dict, pd.DataFrame | None, pd.DataFrame | None]:
    """The picks of the measured choices (study -> setting), MoCL's routing table and the split
    under other K and temperatures, where the notebooks saved them."""
    studies = inputs.notebook_params["06_ablations"].choices
    picked = {study: picks.pick(inputs.table(f"06_{study}"), choice) for study, choice in studies.items()
              if inputs.has(f"06_{study}")}
    routing = inputs.table("04_mocl_routing") if inputs.has("04_mocl_routing") else None
    split_settings = inputs.table("06_split_settings") if inputs.has("06_split_settings") else None
    return picked, routing, split_settings


def mocl_routing_sentence(routing: pd.DataFrame) -> str:
    """What MoCL's routing table says at its last stage: keys that cannot tell the stages apart give
    the newest module about the uniform weight 1/t (within 1.5 times it)."""
    last = routing.iloc[-1]
    stage, newest, uniform = int(last["stage"]), float(last["newest"]), float(last["uniform 1/t"])
    measured = (f"after stage {stage} its own training prompts give the newest module a weight of {newest:.3f} "
                f"against a uniform {uniform:.3f} (`tables/04_mocl_routing.md`)")
    if newest < 1.5 * uniform:
        return (f"- MoCL's keys cannot tell the stages apart when every stage asks the same questions: {measured}, "
                "so every revision is spread over all modules.")
    return f"- MoCL's keys route each stage's prompts mostly to that stage's module: {measured}."


def _loss_deviation(pbl, measured: str) -> str:
    """The learning-bias loss as trained against the printed one."""
    return (f"- Learning-bias loss: `pbl.variant: {pbl.variant}`"
            + (" (the bounded logistic form; the printed form is `paper`)" if pbl.variant != "paper"
               else " (the printed form)")
            + f", `pbl.reduction: {pbl.reduction}`" + (" (the printed formula sums)" if pbl.reduction != "sum" else "")
            + (f", `pbl.clamp: {pbl.clamp:g}`" if pbl.clamp else "") + "." + measured)


def _sampling_deviation(pbl, stages: list[int], split_settings: pd.DataFrame | None) -> str:
    """K, temperature and top-p of the preference samples, and the split under other settings."""
    without_aligned = None if split_settings is None else split_settings["questions without aligned %"]
    return (f"- K = {pbl.k} samples at temperature {pbl.temperature:g}, top-p {pbl.top_p:g}, {pbl.max_new_tokens} "
            "new tokens"
            + ("" if without_aligned is None else
               f"; sampled again at stage {stages[1]} under other K and temperatures, the share of questions without "
               f"an aligned sample runs from {without_aligned.min():.1f}% to {without_aligned.max():.1f}% "
               "(`tables/06_split_settings.md`)") + ".")


def _evaluation_deviation(evaluation) -> str:
    """The evaluation decoding against the authors' script's."""
    return (f"- Evaluation: `eval.mode: {evaluation.mode}`"
            + (f" (greedy, {evaluation.max_new_tokens} new tokens, under the system prompt "
               f"\"{DEFAULT_SYSTEM_PROMPT}\"); the authors' script samples at temperature 0.8, top-p 0.95, up to "
               "256 tokens, from a bare user turn (the side table below compares both)" if evaluation.mode == "greedy"
               else " (the authors' sampling)") + ".")


def deviations(inputs: ReportInputs, pick) -> str:
    """The list of deviations from the paper's setting, read from ``training.yaml`` and the tables."""
    training, pbl = inputs.training, inputs.training.pbl
    picked, routing, split_settings = side_tables(inputs)

    def measured(study: str) -> str:
        return (f" By measurement (`tables/06_{study}.md`, the rule in `06_ablations.yaml`): "
                f"{choices.check_choice(inputs.profile, study, picked[study])}." if study in picked else "")

    return "\n".join([
        _loss_deviation(pbl, measured("loss_variant")),
        f"- An NLL term on the gold answer beside the preference terms: `nll_weight: {pbl.nll_weight:g}`, "
        f"`preference_weight: {pbl.preference_weight:g}` (the paper prints the preference terms only).",
        _sampling_deviation(pbl, inputs.stages, split_settings),
        f"- F-Learning subtracts its forgetting delta at `forgetting_lambda: {training.flearning.forgetting_lambda:g}`."
        + measured("flearning_lambda"),
        *([mocl_routing_sentence(routing)] if routing is not None else []),
        f"- {training.augment.rounds} self-distillation round(s) a stage"
        + (": the filtered set does not feed a second round (the cpu budget; `augment.rounds`)"
           if training.augment.rounds < 2 else "") + ".",
        _evaluation_deviation(training.eval),
        f"- Self-distillation rewrites with `augment.rewriter_scale: {training.augment.rewriter_scale:g}` of the "
        "stage's fine-tuning delta (1.0, the undamped rewriter, is this repo's closest reading of the slides; the "
        "value was set by hand, not by a rule stated beforehand; `notebooks/03b_augmentation.ipynb` measures what it "
        "buys on the validation facts).",
        "- Mutual information read as a lexical-overlap score between x' and the original question x "
        "(`mscl/core/selection.py`); the slides define neither the counterpart nor the counts.",
        f"- LoRA on {', '.join(training.train.lora.target_modules)}, rank {training.train.lora.r}; "
        f"{training.train.epochs:g} epochs at learning rate {training.train.learning_rate:g}: "
        f"{picks.check_regime(inputs.profile, pick)}.",
    ])


def _regime_paragraph(inputs: ReportInputs, pick, sweep: pd.DataFrame, pilot: pd.DataFrame) -> str:
    """CIT's training budget: the sweep's rule, its pick and the stale answers across the sweep."""
    pilot_params = inputs.notebook_params["02_pilot"]
    last = max(int(c.rsplit("s", 1)[1]) for c in sweep.columns if c.startswith("val stale s"))
    return (f"**The regime.** CIT trains at {pick['setting'] if pick is not None else 'training.yaml budget'}: in the "
            f"sweep (the reduced stream, {pilot_params.sweep.facts} facts and every validation fact, the first "
            f"training seed), the lowest budget whose stage-1 validation ACC reaches "
            f"{pilot_params.sweep.min_stage1_acc:g}% (the rule in "
            "`params/<profile>/02_pilot.yaml`, fixed before the sweep ran). On the full base set the same budget "
            f"reaches {pilot['ACC'].iloc[0]:.1f}%"
            + (f" ± {pilot['ACC_sd'].iloc[0]:.1f} (seed sd)" if "ACC_sd" in pilot else "")
            + f" at stage 1 on the evaluation split. Across the sweep the stale-answer rate on validation at stage "
            f"{last} runs from {sweep[f'val stale s{last}'].min():.1f}% to {sweep[f'val stale s{last}'].max():.1f}%.")


def _conflict_paragraph(inputs: ReportInputs) -> str:
    """What the backbone knew before stage 1, and the stale answers of CIT and Ours after a revision."""
    stages = inputs.stages
    second, last = stages[1], stages[-1]
    sources = inputs.table("04_answer_sources").set_index(["method", "stage"])
    known_before = 100 * inputs.predictions("cit", stages[0])["old_ok"].mean()

    def stale(method: str, stage: int) -> float:
        return sources.loc[(method, stage), "stale"] if (method, stage) in sources.index else float("nan")

    return (f"**Knowledge conflict.** Before stage 1 the backbone already answers {known_before:.1f}% of the base "
            f"set's evaluation questions (`known_share` in `01_data_build.yaml` asks the probe for such facts). After "
            f"a revision, CIT gives a stale "
            f"answer in {stale('cit', second):.1f}% of the items at stage {second} and {stale('cit', last):.1f}% "
            f"at stage {last}; Ours in {stale('ours', second):.1f}% and {stale('ours', last):.1f}%.")


def _verdicts_paragraphs(claims_df: pd.DataFrame) -> list[str]:
    """The claims that agree after the Holm correction, then every other with its numbers."""
    agree = claims_df[claims_df["verdict (Holm)"] == "agrees"]
    not_reproduced = claims_df[claims_df["verdict (Holm)"] != "agrees"]
    return [
        f"**What reproduces.** {len(agree)} of {len(claims_df)} claims agree after the Holm correction"
        + (": " + "; ".join(f"{claim.section}: {claim.claim}" for _, claim in agree.iterrows()) if len(agree) else "")
        + ".",
        "**What does not** (Holm-corrected verdict):\n"
        + ("\n".join(f"- {claim.section}: {claim.claim}: ours {glance.holm_interval(claim)} (Holm-adjusted), p (Holm) "
                     f"{claim['p (Holm)']} ({claim['verdict (Holm)']}); paper {claim.paper}"
                     for _, claim in not_reproduced.iterrows()) or "- none"),
    ]


def discussion(inputs: ReportInputs, claims_df: pd.DataFrame, pick, sweep: pd.DataFrame, pilot: pd.DataFrame) -> str:
    """What reproduces and what does not, with the measurements behind it."""
    first, last = inputs.stages[0], inputs.stages[-1]
    first_retention = inputs.first_retention
    pilot_claim = claims_df[claims_df["section"] == "pilot"].iloc[0]
    return "\n\n".join([
        _regime_paragraph(inputs, pick, sweep, pilot),
        _conflict_paragraph(inputs),
        f"**The pilot's decline.** CIT's ACC from stage {first} to stage {last}: "
        f"{glance.holm_interval(pilot_claim)} ({pilot_claim['verdict (Holm)']} after Holm, its Holm-adjusted "
        "interval); the paper: "
        f"{pilot_claim['paper']}.",
        f"**Retention** rests on the {first_retention.reset_index()['fact_id'].nunique()} held-out stage-1 facts "
        f"({len(first_retention)} evaluation rows over the seeds), which no later stage revises or retrains: the KRR "
        "claims test whether later stages erase them.",
        *_verdicts_paragraphs(claims_df),
    ])


# --------------------------------------------------------------------------- the report, section by section
def _title_section(inputs: ReportInputs) -> list[str]:
    """The title and what every number of the report is."""
    seeds = inputs.training.seeds
    return [
        f"# Results: profile `{inputs.profile}`, backbone `{inputs.backbone}`",
        "Written by `notebooks/08_report.ipynb` from the runs under `artifacts/runs/` (see `reports/notebooks/` "
        "for the executed notebooks). All numbers are percentages; ACC and KGR follow the authors' released "
        "substring rule; intervals are 95% bootstrap intervals that resample training seeds, then facts within "
        "each seed "
        f"({claims.CLAIMS_BOOTSTRAP} resamples"
        + (f"; {len(seeds)} training seeds: tables show their mean and seed standard deviation, and the "
           "retention band is a 95% t-interval over the seeds" if len(seeds) > 1 else "")
        + "). The paper's numbers are transcribed in `reports/paper/` from the paper's slides "
        "(Guan et al., Findings of NAACL 2025).",
        "**Which split each number is on.** The tables, claims and figures below score the `eval` split (held-out "
        "wordings of the facts a stage trains, never a training question); `KRR` scores the "
        "unrevised facts among them, `KRR_heldout` and the retention claims the `heldout` split (facts learned "
        "at stage 1 only), and the general-knowledge numbers the `general` set. The choices made by rule "
        "(the training budget, the loss form, F-Learning's λ, the replay share, the rewriter scale) read the "
        "`validation` split alone: facts disjoint from every evaluation item (`reports/data_card.md`, Design). "
        "Numbers read on validation say so (\"val\" columns, the regime paragraph, the measured choices).",
    ]


def _finding_section(claims_df: pd.DataFrame) -> list[str]:
    """The finding first: which of the paper's gains hold at every training budget and at equal compute."""
    lines = glance.finding(claims_df)
    return ["## The finding", *lines] if lines else []


def _claims_section(claims_df: pd.DataFrame) -> list[str]:
    """Every claim checked, with the verdicts counted raw and after Holm's correction."""
    def counted(column: str) -> str:
        return ", ".join(f"{n} {verdict}" for verdict, n in claims_df[column].value_counts().items())

    return [
        "## The paper's claims against this run",
        f"{len(claims_df)} comparisons. Raw verdicts (95% interval): {counted('verdict')}. Holm-Bonferroni over all "
        f"{len(claims_df)} (adjusted p < 0.05): {counted('verdict (Holm)')}.",
        claims_df.to_markdown(index=False, floatfmt=".3f"),  # p-values to 3 decimals (the only numbers here)
    ]


def _pilot_section(inputs: ReportInputs, sweep: pd.DataFrame, pilot: pd.DataFrame) -> list[str]:
    """Notebook 02: the budget sweep, then CIT over the full stream at the picked budget."""
    columns = ("stage", "ACC", "ACC_sd", "KGR", "stale", "stale_sd", "KRR", "ACC_general")
    return [
        "## Pilot: plain continual fine-tuning (CIT)",
        "CIT's training budget, chosen by the rule in `params/<profile>/02_pilot.yaml` (the lowest budget "
        "whose stage-1 ACC reaches the threshold) from this sweep at reduced size:",
        markdown(sweep),
        inputs.figure("02_pilot_sweep"),
        "CIT over the full stream at that regime (`stale`: share of answers that give an answer a revision "
        "replaced):",
        markdown(pilot[[column for column in columns if column in pilot]]),
        inputs.figure(f"02_pilot_{inputs.pilot_method}"),
    ]


def _main_table_section(inputs: ReportInputs, ours_main: pd.DataFrame, paper_main: pd.DataFrame,
                        routing: pd.DataFrame | None) -> list[str]:
    """Notebook 04: the main table beside the paper's, the answer sources and MoCL's routing."""
    return [
        "## Domain-independent stream: the main table",
        "Ours (change against CIT at the same stage in brackets; `—`: the stage is CIT's, shared by every method):",
        markdown(ours_main),
        "The paper's (Table: domain-independent setting):",
        markdown(paper_main),
        "### Where each answer comes from: current, stale (replaced by a revision) or neither",
        inputs.figure("04_answer_sources"),
        *(["### MoCL's routing of each stage's own training prompts, right after the stage",
           markdown(routing)] if routing is not None else []),
    ]


def _cross_domain_section(inputs: ReportInputs) -> list[str]:
    """Notebook 05: ACC and KGR per stage, and the accuracy matrix's summary."""
    long = inputs.table("05_cross_domain")
    wide = long.pivot_table(index="method", columns="stage", values=["ACC", "KGR"], sort=False)
    wide.columns = [f"stage {stage} {metric}" for metric, stage in wide.columns]
    return [
        "## Cross-domain stream",
        markdown(wide.reset_index()),
        inputs.figure("05_cross_domain"),
        "The accuracy matrix R[k][j] (ACC after stage k on domain j's facts, on their current answers) and, "
        "from it, average accuracy A, backward transfer BWT and forgetting F at the last stage (Chaudhry et "
        "al. 2018), in points, mean and seed sd:",
        markdown(inputs.table("05_continual_summary")),
        inputs.figure("05_accuracy_matrix"),
    ]


def _real_revisions_section(inputs: ReportInputs) -> list[str]:
    """Notebook 05b: ACC and KGR per stage of the real-revision stream, the external check."""
    if not inputs.has("05b_real_revisions"):
        return []
    long = inputs.table("05b_real_revisions")
    wide = long.pivot_table(index="method", columns="stage", values=["ACC", "KGR"], sort=False)
    wide.columns = [f"stage {stage} {metric}" for metric, stage in wide.columns]
    return [
        "## Real revisions (external check)",
        "Currencies replaced in CLDR's history (babel) and time zones whose UTC offset tzdata records "
        "changing, at five dates from 1998 to 2025 (the data card lists the sources and versions). Do the "
        "gains of the edited stream hold on knowledge that really changed? The claims table's \"real "
        "revisions\" rows test each gap.",
        markdown(wide.reset_index()),
        inputs.figure("05b_real_revisions"),
    ]


def _ablations_section(inputs: ReportInputs, ablations: dict, picked: dict,
                       split_settings: pd.DataFrame | None) -> list[str]:
    """Notebook 06: each ablation table, the augmentation counts, the preference split and the
    choices made by measurement."""
    parts = ["## Ablations (stage 2), the paper's row beside each of ours"]
    for name, table in ablations.items():
        parts += [f"### {name.replace('_', ' ')}", markdown(table)]
    counts_path = inputs.out / "tables" / "06_augmentation_counts.md"
    if counts_path.is_file():
        parts += ["### Augmentation: generated, filtered and kept per strategy and round", counts_path.read_text()]
    if inputs.has("06_preference_split"):
        parts += ["### The preference split as it happened (distinct responses, mean over seeds)",
                  markdown(inputs.table("06_preference_split"))]
    if split_settings is not None:
        parts += ["### The split at stage 2 under other K and temperatures (sampling only)", markdown(split_settings)]
    if picked:
        parts += ["### Choices made by measurement (the rule in `params/<profile>/06_ablations.yaml`)"]
        for study in picked:
            parts += [f"`{study}`: the rule picks `{picked[study]}`.", markdown(inputs.table(f"06_{study}"))]
        parts += [inputs.figure("06_choices")]
    return parts


def _retention_section(inputs: ReportInputs) -> list[str]:
    """Notebook 07: KRR of the stage-1 facts never revised, and the general set."""
    return ["## Retention of stage-1 knowledge", markdown(inputs.table("07_retention")), inputs.figure("07_retention")]


def _deviations_section(inputs: ReportInputs, pick) -> list[str]:
    """Where this run's setting differs from the paper's (:func:`deviations`)."""
    return ["## Deviations from the paper's setting", "Read from `params/<profile>/training.yaml`:",
            deviations(inputs, pick)]


def _evaluation_modes_section(inputs: ReportInputs, modes_table: pd.DataFrame) -> list[str]:
    """The last stage asked under both evaluation modes (:func:`evaluation_modes_table`)."""
    return [
        f"### Evaluation mode: stage {inputs.stages[-1]}, greedy against the authors' sampling",
        "ACC (%) of each method's last stage, its evaluation questions answered under both modes (mean and "
        "seed sd; `mscl.evaluation.tables.evaluation_modes`):",
        markdown(modes_table),
    ]


def _costs_section(inputs: ReportInputs, costs: pd.DataFrame) -> list[str]:
    """Wall time per stream and method, and the ``make reproduce`` jobs where that run saved them."""
    parts = [
        "## What this run costs",
        "Wall time of every finished stage, from its manifest (`timings_s`), summed per stream and method "
        "(`mscl.pipeline.reproduce.stage_costs`); `make reproduce` runs two stage jobs side by side with one thread "
        "each, so the training phase takes about half the sum:",
        markdown(costs),
    ]
    if (inputs.out / "tables" / "00_reproduce_timings.csv").is_file():
        parts += ["The jobs of the `make reproduce` run that trained them, one thread each, two at a time "
                  "(`tables/00_reproduce_timings.md`; a job whose stages were finished before the run took only the "
                  "time to find them):", markdown(inputs.table("00_reproduce_timings"))]
    return parts


def _discussion_section(inputs: ReportInputs, claims_df: pd.DataFrame, pick, sweep: pd.DataFrame,
                        pilot: pd.DataFrame) -> list[str]:
    """What reproduces and what does not (:func:`discussion`), and what in the setting may explain it."""
    ablation_seeds = inputs.notebook_params["06_ablations"].seeds
    return [
        "## Discussion",
        discussion(inputs, claims_df, pick, sweep, pilot),
        "What differs from the paper's setting, and may explain it: a 135M-parameter backbone instead of 7-13B; "
        f"a base set of tens of facts instead of thousands; the ablations on {len(ablation_seeds)} training seed(s); "
        "greedy decoding at evaluation instead of sampling at temperature 0.8; self-distillation rewrites written by "
        "a 135M model, which are often degenerate and are filtered; and our benchmark is built from package "
        "data (`reports/data_card.md`), not the authors' unreleased data. The learning-bias variant, weights "
        "and every other knob are in `params/<profile>/training.yaml`.",
    ]


def _caption(stem: str) -> str | None:
    """A saved figure's caption: :func:`mscl.evaluation.report.figure_caption` (templated stems resolved),
    else the exact key of :data:`mscl.evaluation.report.FIGURES`, where the report module has them."""
    resolve = getattr(report, "figure_caption", None)
    return resolve(stem) if resolve is not None else getattr(report, "FIGURES", {}).get(stem)


def _figures_section(inputs: ReportInputs) -> list[str]:
    """Every figure saved under ``figures/``, each with its caption (a figure without one is listed by
    its name alone)."""
    paths = sorted((inputs.out / "figures").glob("*.png"))
    if not paths:
        return []
    lines = [f"- [`{path.name}`](figures/{path.name})" + (f": {caption}" if (caption := _caption(path.stem)) else "")
             for path in paths]
    return ["## Figures", "Every figure the notebooks saved, in `figures/`:", "\n".join(lines)]


def _provenance_section(inputs: ReportInputs) -> list[str]:
    """Which code trained the stages behind the report: each version and how many stages it trained."""
    from collections import Counter, defaultdict

    codes = [read_json(path).get("code") or {} for path in verify.manifests(inputs.profile)]
    if not codes:
        return []
    stages = Counter(code.get("source_hash") for code in codes)
    commits: dict = defaultdict(Counter)   # source hash -> the commits (and dirty trees) its stages ran at
    for code in codes:
        commits[code.get("source_hash")][describe(code) if code.get("commit") else "no git checkout"] += 1
    lines = [f"- `mscl/` source {str(source)[:12] if source else '(not recorded)'}: {count} stage(s), at "
             + ", ".join(f"{commit} ({n})" for commit, n in commits[source].most_common())
             for source, count in stages.most_common()]
    same = (f"Every one of the {len(codes)} stages was trained by the same `mscl/` code (one source hash); the "
            "commits differ only outside `mscl/`." if len(stages) == 1 and None not in stages else
            f"The {len(codes)} stages were trained by {len(stages)} versions of `mscl/`.")
    return ["## Provenance",
            "The code that trained the report's stages: a stage's manifest records the commit, whether `mscl/` "
            "differed from it, and a hash of `mscl/`'s sources (`python -m mscl.pipeline.verify` lists stages "
            f"trained by other code than this checkout's). {same}\n\n" + "\n".join(lines)]


def write_report(inputs: ReportInputs, claims_df: pd.DataFrame, ablations: dict, ours_main: pd.DataFrame,
                 paper_main: pd.DataFrame, modes_table: pd.DataFrame, costs: pd.DataFrame) -> Path:
    """``reports/README.md`` (``<reports>/README.md`` for another profile); returns its path."""
    sweep = inputs.table("02_pilot_sweep")
    pilot = inputs.table(f"02_pilot_{inputs.pilot_method}")
    pick = picks.pick_regime(sweep, inputs.notebook_params["02_pilot"].sweep.min_stage1_acc)
    picked, routing, split_settings = side_tables(inputs)
    sections = [
        *_title_section(inputs),
        *_finding_section(claims_df),
        *_claims_section(claims_df),
        *_pilot_section(inputs, sweep, pilot),
        *_main_table_section(inputs, ours_main, paper_main, routing),
        *_cross_domain_section(inputs),
        *_real_revisions_section(inputs),
        *_ablations_section(inputs, ablations, picked, split_settings),
        *_retention_section(inputs),
        *_deviations_section(inputs, pick),
        *_evaluation_modes_section(inputs, modes_table),
        *_costs_section(inputs, costs),
        *_discussion_section(inputs, claims_df, pick, sweep, pilot),
        *_figures_section(inputs),
        *_provenance_section(inputs),
    ]
    text = "\n\n".join(part for part in sections if part) + "\n"
    return atomic_write_text(inputs.out / "README.md", text)
