"""The report, ``reports/README.md``, written from what notebooks 02-07 saved (notebook 08 calls it).

:class:`ReportInputs` reads a profile's params, its saved tables and predictions and the paper's
transcribed tables; :func:`paper_claims` lists every claim of the paper the runs can check (each
with our difference, its interval and p-value); :func:`ablation_tables`, :func:`main_tables` and
:func:`evaluation_modes_table` build the tables beside the paper's; :func:`deviations` and
:func:`discussion` are the prose computed from the params and the tables; :func:`write_report`
assembles the file. Nothing in the report is typed in: every number is read from saved run
artifacts or from the paper's transcribed CSVs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mscl.common.io import atomic_write_text
from mscl.common.params import TrainingParams, load_params
from mscl.common.paths import reports_dir
from mscl.engine.models import DEFAULT_SYSTEM_PROMPT
from mscl.evaluation import claims as C
from mscl.evaluation import picks
from mscl.evaluation.report import main_table, save_table
from mscl.evaluation.tables import evaluation_modes
from mscl.pipeline import choices

NOTEBOOK_PARAMS = ("02_pilot", "04_domain_independent", "05_cross_domain", "06_ablations", "07_retention")


@dataclass
class ReportInputs:
    """What the report reads for ``profile``: its params, tables, predictions and the paper's."""
    profile: str
    backbone: str
    training: TrainingParams
    nb: dict
    out: Path
    paper: dict = field(repr=False)

    @classmethod
    def load(cls, profile: str, backbone: str | None = None) -> "ReportInputs":
        training = load_params(profile, "training")
        return cls(profile, backbone or training.backbone, training,
                   {name: load_params(profile, name) for name in NOTEBOOK_PARAMS}, reports_dir(profile),
                   C.paper_results())

    def table(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.out / "tables" / f"{name}.csv")

    def has(self, name: str) -> bool:
        return (self.out / "tables" / f"{name}.csv").is_file()

    def figure(self, name: str) -> str:
        return f"![{name}](figures/{name}.png)" if (self.out / "figures" / f"{name}.png").is_file() else ""

    def preds(self, method: str, stage: int, stream: str = "domain_independent", eval_set: str = "eval",
              seeds=None) -> pd.DataFrame:
        """One row per (training seed, question): with several seeds the claims pool their questions."""
        return C.stage_predictions(self.profile, self.backbone, stream, method, stage, eval_set,
                                   seeds=seeds or self.training.seeds)

    @property
    def stages(self) -> list[int]:
        return sorted(int(s) for s in self.table("04_domain_independent_long")["stage"].unique())

    @property
    def pilot_method(self) -> str:
        return self.nb["02_pilot"].method

    @property
    def first_ret(self) -> pd.DataFrame:
        """The retention set's rows after stage 1 (KRR's denominator)."""
        return self.preds("cit", self.stages[0], self.nb["07_retention"].stream, "retention")


def markdown(df: pd.DataFrame) -> str:
    whole = {c: "Int64" for c in df.columns if c in ("stage", "round", "n")}
    return df.astype(whole).to_markdown(index=False, floatfmt=".1f")


def main_tables(r: ReportInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The main table, ours and the paper's in the same layout (the paper's saved as a table)."""
    ours_main = main_table(r.table("04_domain_independent_long"), baseline="cit").fillna("—")
    paper_main = main_table(C.paper_main_table(r.paper["main"]), baseline="CIT").fillna("—")
    save_table(paper_main, "08_paper_domain_independent", r.profile)
    return ours_main, paper_main


def ablation_tables(r: ReportInputs) -> dict[str, pd.DataFrame]:
    """Each ablation table of notebook 06 with the paper's row beside each of our variants."""
    paper, profile, out = r.paper, r.profile, {}
    for name in r.nb["06_ablations"].tables:
        ours = r.table(f"06_ablation_{name}")
        labels = C.PAPER_ABLATION_ROWS.get(name, {})
        ref = paper["ablations"][paper["ablations"]["ablation"] == C.PAPER_ABLATION_NAMES.get(name, name)]
        ref = ref.set_index("variant")
        ours["paper row"] = [labels.get(m, "—") for m in ours["method"]]
        ours["paper ACC"] = [ref["ACC"].get(labels.get(m), float("nan")) for m in ours["method"]]
        ours["paper KGR"] = [ref["KGR"].get(labels.get(m), float("nan")) for m in ours["method"]]
        out[name] = ours[["method", "ACC", "KGR", "ACC_edited", "ACC_general", "paper row", "paper ACC",
                          "paper KGR"]]
        save_table(out[name], f"08_ablation_{name}_vs_paper", profile)
    return out


def paper_claims(r: ReportInputs, n_boot: int = C.CLAIMS_BOOTSTRAP) -> list:
    """Every claim of the paper these runs can check (:class:`mscl.evaluation.claims.Claim`): the pilot's
    decline, Ours against every baseline of the main table, the ablations' pairs, the cross-domain
    stream and retention."""
    nb, training, paper, preds = r.nb, r.training, r.paper, r.preds
    stages = r.stages
    first, last = stages[0], stages[-1]
    pilot_method = r.pilot_method
    cross_long = r.table("05_cross_domain")
    first_ret = r.first_ret
    claims = []
    main_methods = nb["04_domain_independent"].methods
    pm = paper["main"]
    paper_names = C.PAPER_METHODS

    # pilot: plain continual fine-tuning degrades
    claims.append(C.Claim("pilot", f"CIT's ACC falls from stage {first} to stage {last}",
                          C.paper_main_delta(pm, "ACC", ("CIT", 5), ("CIT", 1)),
                          -1, *C.paired_difference(C.across_stages(preds(pilot_method, last)),
                                                   C.across_stages(preds(pilot_method, first)), "ACC", n_boot,
                                                   with_p=True)))
    # main table: ours above every baseline at every stage after the shared one
    if "ours" in main_methods:
        for rival in [m for m in main_methods if m != "ours"]:
            for stage in stages[training.shared_stages:]:
                for metric in ("ACC", "KGR"):
                    if metric == "KGR" and rival != "cit":
                        continue
                    claims.append(C.Claim(
                        "main table", f"Ours {metric} > {paper_names.get(rival, rival)} at stage {stage}",
                        C.paper_main_delta(pm, metric, ("Ours", stage), (paper_names.get(rival, rival), stage)), +1,
                        *C.paired_difference(preds("ours", stage), preds(rival, stage), metric, n_boot,
                                             with_p=True)))
    # ablations (stage 2)
    abl = nb["06_ablations"]
    pairs = {"learning_bias": [("pbl", "cit")],
             "augmentation": [("cit+bki", "cit"), ("cit+lce", "cit"), ("cit+pa", "cit"), ("cit+ca", "cit"),
                              ("cit+ca", "cit+bki"), ("cit+ca", "cit+lce"), ("cit+ca", "cit+pa")],
             "selection": [("cit+ca+ds", "cit+ca"), ("cit+ca+ds", "cit+ca+rs50"), ("cit+ca+ds", "cit+ca+rs25"),
                           ("cit+ca+ds", "cit+ca+rs12.5"), ("cit+ca+ds", "cit")]}
    for name, methods in abl.tables.items():
        labels = C.PAPER_ABLATION_ROWS.get(name, {})
        for a, b in pairs.get(name, []):
            if a in methods and b in methods:
                for metric in ("ACC", "KGR"):
                    claims.append(C.Claim(
                        f"ablation: {name}", f"{a} {metric} > {b}",
                        C.paper_ablation_delta(paper["ablations"], C.PAPER_ABLATION_NAMES[name], metric,
                                               labels.get(a, a), labels.get(b, b)), +1,
                        *C.paired_difference(preds(a, abl.stage, abl.stream, seeds=abl.seeds),
                                             preds(b, abl.stage, abl.stream, seeds=abl.seeds), metric,
                                             n_boot, with_p=True)))
    # cross-domain: ours above CIT at every stage after the shared one
    cross = nb["05_cross_domain"]
    cross_stages = sorted(cross_long["stage"].unique())
    if {"ours", "cit"} <= set(cross.methods):
        for stage in cross_stages[training.shared_stages:]:
            claims.append(C.Claim("cross-domain", f"Ours ACC > CIT at stage {stage}",
                                  "a figure in the paper (no numbers transcribed)", +1,
                                  *C.paired_difference(preds("ours", stage, cross.stream),
                                                       preds("cit", stage, cross.stream),
                                                       "ACC", n_boot, with_p=True)))
    # retention: CIT forgets round after round; ours retains more
    ret = nb["07_retention"]
    second = stages[min(1, len(stages) - 1)]
    claims.append(C.Claim("retention", f"CIT's KRR falls from stage {second} to stage {last}",
                          "stated in the paper (figure)", -1,
                          *C.krr_difference(first_ret, preds("cit", last, ret.stream, "retention"),
                                            preds("cit", second, ret.stream, "retention"), n_boot, with_p=True)))
    for method in [m for m in ret.methods if m != "cit"]:
        claims.append(C.Claim("retention", f"{paper_names.get(method, method)} KRR > CIT at stage {last}",
                              "stated for Ours (figure)" if method == "ours" else "not stated", +1,
                              *C.krr_difference(first_ret, preds(method, last, ret.stream, "retention"),
                                                preds("cit", last, ret.stream, "retention"), n_boot,
                                                with_p=True)))
    if len(claims) > C.HOLM_FAMILY_MAX:
        raise ValueError(f"{len(claims)} claims: raise mscl.evaluation.claims.CLAIMS_BOOTSTRAP and HOLM_FAMILY_MAX")
    return claims


def evaluation_modes_table(r: ReportInputs) -> pd.DataFrame:
    """Each main-table method's last stage under both evaluation modes (mean and seed sd), saved."""
    main_nb = r.nb["04_domain_independent"]
    modes = evaluation_modes(r.profile, main_nb.stream, main_nb.methods, r.stages[-1], params=r.training,
                             backbone=r.backbone)
    table = modes.pivot_table(index="method", columns="mode", values="ACC", aggfunc=["mean", "std"], sort=False)
    table.columns = [f"ACC {mode} ({'mean' if agg == 'mean' else 'seed sd'})" for agg, mode in table.columns]
    table = table.reset_index()
    save_table(table, "08_evaluation_modes", r.profile)
    return table


def side_tables(r: ReportInputs) -> tuple[dict, pd.DataFrame | None, pd.DataFrame | None]:
    """The picks of the measured choices (study -> setting), MoCL's routing table and the split
    under other K and temperatures, where the notebooks saved them."""
    studies = r.nb["06_ablations"].choices
    picked = {study: picks.pick(r.table(f"06_{study}"), choice) for study, choice in studies.items()
              if r.has(f"06_{study}")}
    routing = r.table("04_mocl_routing") if r.has("04_mocl_routing") else None
    split_k = r.table("06_split_settings") if r.has("06_split_settings") else None
    return picked, routing, split_k


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


def deviations(r: ReportInputs, pick) -> str:
    """The list of deviations from the paper's setting, read from ``training.yaml`` and the tables."""
    profile, training, stages = r.profile, r.training, r.stages
    p_ = training.pbl
    picked, routing, split_k = side_tables(r)


    def measured(study):
        return (f" By measurement (`tables/06_{study}.md`, the rule in `06_ablations.yaml`): "
                f"{choices.check_choice(profile, study, picked[study])}." if study in picked else "")


    return "\n".join([
        f"- Learning-bias loss: `pbl.variant: {p_.variant}`"
        + (" (the bounded logistic form; the printed form is `paper`)" if p_.variant != "paper"
           else " (the printed form)")
        + f", `pbl.reduction: {p_.reduction}`" + (" (the printed formula sums)" if p_.reduction != "sum" else "")
        + (f", `pbl.clamp: {p_.clamp:g}`" if p_.clamp else "") + "." + measured("loss_variant"),
        f"- An NLL term on the gold answer beside the preference terms: `nll_weight: {p_.nll_weight:g}`, "
        f"`preference_weight: {p_.preference_weight:g}` (the paper prints the preference terms only).",
        f"- K = {p_.k} samples at temperature {p_.temperature:g}, top-p {p_.top_p:g}, {p_.max_new_tokens} new tokens"
        + ("" if split_k is None else
           f"; sampled again at stage {stages[1]} under other K and temperatures, the share of questions without an "
           f"aligned sample runs from {split_k['questions without aligned %'].min():.1f}% to "
           f"{split_k['questions without aligned %'].max():.1f}% (`tables/06_split_settings.md`)") + ".",
        f"- F-Learning subtracts its forgetting delta at `forgetting_lambda: {training.flearning.forgetting_lambda:g}`."
        + measured("flearning_lambda"),
        *([mocl_routing_sentence(routing)] if routing is not None else []),
        f"- {training.augment.rounds} self-distillation round(s) a stage"
        + (": the filtered set does not feed a second round (the cpu budget; `augment.rounds`)"
           if training.augment.rounds < 2 else "") + ".",
        f"- Evaluation: `eval.mode: {training.eval.mode}`"
        + (f" (greedy, {training.eval.max_new_tokens} new tokens, under the system prompt "
           f"\"{DEFAULT_SYSTEM_PROMPT}\"); the authors' script samples at temperature 0.8, top-p 0.95, up to "
           "256 tokens, from a bare user turn (the side table below compares both)" if training.eval.mode == "greedy"
           else " (the authors' sampling)") + ".",
        f"- Self-distillation rewrites with `augment.rewriter_scale: {training.augment.rewriter_scale:g}` of the "
        "stage's fine-tuning delta (1.0 is the paper's setting; `notebooks/03b_augmentation.ipynb` measures why).",
        "- Mutual information read as a lexical-overlap score between x' and the original question x "
        "(`mscl/core/selection.py`); the slides define neither the counterpart nor the counts.",
        f"- LoRA on {', '.join(training.train.lora.target_modules)}, rank {training.train.lora.r}; "
        f"{training.train.epochs:g} epochs at learning rate {training.train.learning_rate:g}: "
        f"{picks.check_regime(profile, pick)}.",
    ])


def discussion(r: ReportInputs, claims_df: pd.DataFrame, pick, sweep: pd.DataFrame, pilot: pd.DataFrame) -> str:
    """What reproduces and what does not, with the measurements behind it."""
    table, preds, nb, stages, first_ret = r.table, r.preds, r.nb, r.stages, r.first_ret
    first, last = stages[0], stages[-1]
    sources = table("04_answer_sources").set_index(["method", "stage"])
    known_before = 100 * preds("cit", first)["old_ok"].mean()
    holm_agree = claims_df[claims_df["verdict (Holm)"] == "agrees"]
    not_reproduced = claims_df[claims_df["verdict (Holm)"] != "agrees"]


    def stale(method, stage):
        return sources.loc[(method, stage), "stale"] if (method, stage) in sources.index else float("nan")


    pilot_claim = claims_df[claims_df["section"] == "pilot"].iloc[0]
    return "\n\n".join([
        f"**The regime.** CIT trains at {pick['setting'] if pick is not None else 'training.yaml budget'}: in the "
        f"sweep (the reduced stream, {nb['02_pilot'].sweep.facts} facts, the first training seed), the lowest budget "
        f"whose stage-1 ACC reaches {nb['02_pilot'].sweep.min_stage1_acc:g}% (the rule in "
        "`params/<profile>/02_pilot.yaml`, fixed before the sweep ran). On the full base set the same budget "
        f"reaches {pilot['ACC'].iloc[0]:.1f}%"
        + (f" ± {pilot['ACC_sd'].iloc[0]:.1f} (seed sd)" if "ACC_sd" in pilot else "")
        + f" at stage 1. Across the sweep the stale-answer rate at stage {last} runs from "
        f"{sweep[f'stale s{last}'].min():.1f}% to {sweep[f'stale s{last}'].max():.1f}%.",
        f"**Knowledge conflict.** Before stage 1 the backbone already answers {known_before:.1f}% of the base "
        f"set's evaluation questions (`known_share` in `01_data_build.yaml` asks the probe for such facts). After a "
        f"revision, CIT gives a stale "
        f"answer in {stale('cit', stages[1]):.1f}% of the items at stage {stages[1]} and {stale('cit', last):.1f}% "
        f"at stage {last}; Ours in {stale('ours', stages[1]):.1f}% and {stale('ours', last):.1f}%.",
        f"**The pilot's decline.** CIT's ACC from stage {first} to stage {last}: "
        f"{pilot_claim['ours (points, 95% CI)']} ({pilot_claim['verdict (Holm)']} after Holm); the paper: "
        f"{pilot_claim['paper']}.",
        f"**Retention** rests on the {first_ret.reset_index()['fact_id'].nunique()} base facts never revised "
        f"({len(first_ret)} evaluation rows over the seeds), which are retrained with their unchanged answer at "
        "every stage: the KRR claims test retention under retraining, with little power.",
        f"**What reproduces.** {len(holm_agree)} of {len(claims_df)} claims agree after the Holm correction"
        + (": " + "; ".join(f"{r.section}: {r.claim}" for _, r in holm_agree.iterrows()) if len(holm_agree) else "")
        + ".",
        "**What does not** (Holm-corrected verdict):\n"
        + ("\n".join(f"- {r.section}: {r.claim}: ours {r['ours (points, 95% CI)']}, p (Holm) {r['p (Holm)']} "
                      f"({r['verdict (Holm)']}); paper {r.paper}" for _, r in not_reproduced.iterrows()) or "- none"),
    ])


def write_report(r: ReportInputs, claims_df: pd.DataFrame, ablations: dict, ours_main: pd.DataFrame,
                 paper_main: pd.DataFrame, modes_table: pd.DataFrame, costs: pd.DataFrame) -> Path:
    """``reports/README.md`` (``<reports>/README.md`` for another profile); returns its path."""
    profile, backbone, training, nb, out = r.profile, r.backbone, r.training, r.nb, r.out
    table, figure, stages, pilot_method = r.table, r.figure, r.stages, r.pilot_method
    last = stages[-1]
    n_boot = C.CLAIMS_BOOTSTRAP
    ablation_tables = ablations
    picked, routing, split_k = side_tables(r)
    have = r.has
    cross_long = table("05_cross_domain")
    abl = nb["06_ablations"]
    verdicts = claims_df["verdict"].value_counts()
    holm_verdicts = claims_df["verdict (Holm)"].value_counts()
    counts_path = out / "tables" / "06_augmentation_counts.md"
    cross_wide = cross_long.pivot_table(index="method", columns="stage", values=["ACC", "KGR"], sort=False)
    cross_wide.columns = [f"stage {s} {m}" for m, s in cross_wide.columns]
    retention = table("07_retention")
    pilot = table(f"02_pilot_{pilot_method}")
    summary = ", ".join(f"{n} {v}" for v, n in verdicts.items())
    holm_summary = ", ".join(f"{n} {v}" for v, n in holm_verdicts.items())
    sweep = table("02_pilot_sweep")
    pick = picks.pick_regime(sweep, nb["02_pilot"].sweep.min_stage1_acc)
    deviations_text = deviations(r, pick)
    discussion_text = discussion(r, claims_df, pick, sweep, pilot)
    continual = table("05_continual_summary")
    sections = [
        f"# Results: profile `{profile}`, backbone `{backbone}`",
        "Written by `notebooks/08_report.ipynb` from the runs under `artifacts/runs/` (see `reports/notebooks/` "
        "for the executed notebooks). All numbers are percentages; ACC and KGR follow the authors' released "
        "substring rule; intervals are 95% bootstrap intervals that resample training seeds, then facts within "
        "each seed "
        f"({n_boot} resamples"
        + (f"; {len(training.seeds)} training seeds: tables show their mean and seed standard deviation, and the "
           "retention band is a 95% t-interval over the seeds" if len(training.seeds) > 1 else "")
        + "). The paper's numbers are transcribed in `reports/paper/` from the paper's slides "
        "(Guan et al., Findings of NAACL 2025).",
        "## The paper's claims against this run",
        f"{len(claims_df)} comparisons. Raw verdicts (95% interval): {summary}. Holm-Bonferroni over all "
        f"{len(claims_df)} (adjusted p < 0.05): {holm_summary}.",
        claims_df.to_markdown(index=False, floatfmt=".3f"),  # p-values to 3 decimals (the only numbers here)
        "## Pilot: plain continual fine-tuning (CIT)",
        "CIT's training budget, chosen by the rule in `params/<profile>/02_pilot.yaml` (the lowest budget "
        "whose stage-1 ACC reaches the threshold) from this sweep at reduced size:",
        markdown(sweep),
        figure("02_pilot_sweep"),
        "CIT over the full stream at that regime (`stale`: share of answers that give an answer a revision "
        "replaced):",
        markdown(pilot[[c for c in ("stage", "ACC", "ACC_sd", "KGR", "stale", "stale_sd", "KRR", "ACC_general")
                        if c in pilot]]),
        figure(f"02_pilot_{pilot_method}"),
        "## Domain-independent stream: the main table",
        "Ours (change against CIT at the same stage in brackets; `—`: the stage is CIT's, shared by every method):",
        markdown(ours_main),
        "The paper's (Table: domain-independent setting):",
        markdown(paper_main),
        "### Where each answer comes from: current, stale (replaced by a revision) or neither",
        figure("04_answer_sources"),
        *(["### MoCL's routing of each stage's own training prompts, right after the stage",
           markdown(routing)] if routing is not None else []),
        "## Cross-domain stream",
        markdown(cross_wide.reset_index()),
        figure("05_cross_domain"),
        "The accuracy matrix R[k][j] (ACC after stage k on domain j's facts, on their current answers) and, "
        "from it, average accuracy A, backward transfer BWT and forgetting F at the last stage (Chaudhry et "
        "al. 2018), in points, mean and seed sd:",
        markdown(continual),
        figure("05_accuracy_matrix"),
        "## Ablations (stage 2), the paper's row beside each of ours",
    ]
    for name, df in ablation_tables.items():
        sections += [f"### {name.replace('_', ' ')}", markdown(df)]
    if counts_path.is_file():
        sections += ["### Augmentation: generated, filtered and kept per strategy and round", counts_path.read_text()]
    sections += [
        *(["### The preference split as it happened (distinct responses, mean over seeds)",
           markdown(table("06_preference_split"))] if have("06_preference_split") else []),
        *(["### The split at stage 2 under other K and temperatures (sampling only)", markdown(split_k)]
          if split_k is not None else []),
        *(["### Choices made by measurement (the rule in `params/<profile>/06_ablations.yaml`)"]
          + [part for study in picked for part in (f"`{study}`: the rule picks `{picked[study]}`.",
                                                   markdown(table(f"06_{study}")))]
          + [figure("06_choices")] if picked else []),
        "## Retention of stage-1 knowledge",
        markdown(retention),
        figure("07_retention"),
        "## Deviations from the paper's setting",
        "Read from `params/<profile>/training.yaml`:",
        deviations_text,
        f"### Evaluation mode: stage {last}, greedy against the authors' sampling",
        "ACC (%) of each method's last stage, its evaluation questions answered under both modes (mean and "
        "seed sd; `mscl.evaluation.tables.evaluation_modes`):",
        markdown(modes_table),
        "## What this run costs",
        "Wall time of every finished stage, from its manifest (`timings_s`), summed per stream and method "
        "(`mscl.pipeline.reproduce.stage_costs`); `make reproduce` runs two stage jobs side by side with one thread "
        "each, so the training phase takes about half the sum:",
        markdown(costs),
        *(["The jobs of the `make reproduce` run that trained them, one thread each, two at a time "
           "(`tables/00_reproduce_timings.md`; a job whose stages were finished before the run took only the "
           "time to find them):", markdown(table("00_reproduce_timings"))]
          if (out / "tables" / "00_reproduce_timings.csv").is_file() else []),
        "## Discussion",
        discussion_text,
        "What differs from the paper's setting, and may explain it: a 135M-parameter backbone instead of 7-13B; "
        f"a base set of tens of facts instead of thousands; the ablations on {len(abl.seeds)} training seed(s); greedy "
        "decoding at evaluation instead of sampling at temperature 0.8; self-distillation rewrites written by a "
        "135M model, which are often degenerate and are filtered; and our benchmark is built from package "
        "data (`reports/data_card.md`), not the authors' unreleased data. The learning-bias variant, weights "
        "and every other knob are in `params/<profile>/training.yaml`.",
    ]
    report = "\n\n".join(s for s in sections if s) + "\n"
    return atomic_write_text(out / "README.md", report)
