"""Every claim of the paper the runs can check, as one Holm family, and what the report reads.

:class:`ReportInputs` reads a profile's params, its saved tables and predictions and the paper's
transcribed tables; :func:`paper_claims` lists the claims (each with our difference, its interval
and p-value), one builder per section: the pilot's decline, the main table, the ablations, the
cross-domain stream, the real-revision stream, held-out retention, general knowledge and the budget
axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mscl.common.params import TrainingParams, load_params, params_path
from mscl.common.paths import reports_dir
from mscl.evaluation import budgets, claims, conflict

NOTEBOOK_PARAMS = ("02_pilot", "04_domain_independent", "05_cross_domain", "05b_real_revisions", "06_ablations",
                   "07_retention")
# the pairs of notebook 06's ablation tables the paper compares (first named above the second)
ABLATION_PAIRS = {
    "learning_bias": [("pbl", "cit")],
    "augmentation": [("cit+bki", "cit"), ("cit+lce", "cit"), ("cit+pa", "cit"), ("cit+ca", "cit"),
                     ("cit+ca", "cit+bki"), ("cit+ca", "cit+lce"), ("cit+ca", "cit+pa")],
    "selection": [("cit+ca+ds", "cit+ca"), ("cit+ca+ds", "cit+ca+rs50"), ("cit+ca+ds", "cit+ca+rs25"),
                  ("cit+ca+ds", "cit+ca+rs12.5"), ("cit+ca+ds", "cit")],
}


@dataclass
class ReportInputs:
    """What the report reads for ``profile``: its params, tables, predictions and the paper's."""
    profile: str
    backbone: str
    training: TrainingParams
    notebook_params: dict
    out: Path
    paper: dict = field(repr=False)

    @classmethod
    def load(cls, profile: str, backbone: str | None = None) -> "ReportInputs":
        """The inputs of ``profile``'s report (``backbone``: the training params' unless given)."""
        training = load_params(profile, "training")
        return cls(profile, backbone or training.backbone, training,
                   {name: load_params(profile, name) for name in NOTEBOOK_PARAMS}, reports_dir(profile),
                   claims.paper_results())

    def table(self, name: str) -> pd.DataFrame:
        """The saved table ``tables/<name>.csv``."""
        return pd.read_csv(self.out / "tables" / f"{name}.csv")

    def has(self, name: str) -> bool:
        """Whether a notebook saved the table ``name``."""
        return (self.out / "tables" / f"{name}.csv").is_file()

    def figure(self, name: str) -> str:
        """The Markdown image of ``figures/<name>.png``, or "" where no notebook saved it."""
        return f"![{name}](figures/{name}.png)" if (self.out / "figures" / f"{name}.png").is_file() else ""

    def predictions(self, method: str, stage: int, stream: str = "domain_independent", eval_set: str = "eval",
                    seeds=None) -> pd.DataFrame:
        """One row per (training seed, question): with several seeds the claims pool their questions."""
        return claims.stage_predictions(self.profile, self.backbone, stream, method, stage, eval_set,
                                        seeds=seeds or self.training.seeds)

    @property
    def stages(self) -> list[int]:
        """The stages of the domain-independent stream, as the main table saved them."""
        return sorted(int(s) for s in self.table("04_domain_independent_long")["stage"].unique())

    @property
    def pilot_method(self) -> str:
        """The method notebook 02 runs over the full stream (CIT)."""
        return self.notebook_params["02_pilot"].method

    @property
    def first_retention(self) -> pd.DataFrame:
        """The held-out retention set's rows after stage 1 (KRR's denominator): stage-1 facts no later
        stage revises or retrains."""
        return self.predictions("cit", self.stages[0], self.notebook_params["07_retention"].stream, "heldout")


# --------------------------------------------------------------------------- the claims
def _difference(a: pd.DataFrame, b: pd.DataFrame, metric: str, n_boot: int):
    """Our paired difference ``a - b`` with its interval and p-value."""
    return claims.paired_difference(a, b, metric, n_boot, with_p=True)


def _pilot_claims(inputs: ReportInputs, n_boot: int) -> list:
    """Plain continual fine-tuning degrades: the pilot's ACC from the first stage to the last."""
    first, last, method = inputs.stages[0], inputs.stages[-1], inputs.pilot_method
    return [claims.Claim("pilot", f"CIT's ACC falls from stage {first} to stage {last}",
                         claims.paper_main_delta(inputs.paper["main"], "ACC", ("CIT", 5), ("CIT", 1)), -1,
                         *_difference(claims.across_stages(inputs.predictions(method, last)),
                                      claims.across_stages(inputs.predictions(method, first)), "ACC", n_boot))]


def _main_table_claims(inputs: ReportInputs, n_boot: int) -> list:
    """Ours above every baseline of the main table at every stage after the shared one (KGR against
    CIT only, as the paper's table gives it)."""
    methods = inputs.notebook_params["04_domain_independent"].methods
    if "ours" not in methods:
        return []
    found = []
    for rival in [m for m in methods if m != "ours"]:
        paper_rival = claims.PAPER_METHODS.get(rival, rival)
        for stage in inputs.stages[inputs.training.shared_stages:]:
            for metric in ("ACC", "KGR") if rival == "cit" else ("ACC",):
                found.append(claims.Claim(
                    "main table", f"Ours {metric} > {paper_rival} at stage {stage}",
                    claims.paper_main_delta(inputs.paper["main"], metric, ("Ours", stage), (paper_rival, stage)), +1,
                    *_difference(inputs.predictions("ours", stage), inputs.predictions(rival, stage), metric,
                                 n_boot)))
    return found


def _ablation_claims(inputs: ReportInputs, n_boot: int) -> list:
    """Each pair of :data:`ABLATION_PAIRS` that notebook 06 trained, at its stage (2), on ACC and KGR."""
    ablations = inputs.notebook_params["06_ablations"]

    def predictions(method: str) -> pd.DataFrame:
        return inputs.predictions(method, ablations.stage, ablations.stream, seeds=ablations.seeds)

    found = []
    for name, methods in ablations.tables.items():
        labels = claims.PAPER_ABLATION_ROWS.get(name, {})
        for better, worse in ABLATION_PAIRS.get(name, []):
            if better not in methods or worse not in methods:
                continue
            for metric in ("ACC", "KGR"):
                found.append(claims.Claim(
                    f"ablation: {name}", f"{better} {metric} > {worse}",
                    claims.paper_ablation_delta(inputs.paper["ablations"], claims.PAPER_ABLATION_NAMES[name], metric,
                                                labels.get(better, better), labels.get(worse, worse)), +1,
                    *_difference(predictions(better), predictions(worse), metric, n_boot)))
    return found


def _cross_domain_claims(inputs: ReportInputs, n_boot: int) -> list:
    """Ours above CIT at every stage of the cross-domain stream after the shared one."""
    cross = inputs.notebook_params["05_cross_domain"]
    if not {"ours", "cit"} <= set(cross.methods):
        return []
    stages = sorted(int(s) for s in inputs.table("05_cross_domain")["stage"].unique())
    found = [claims.Claim("cross-domain", f"Ours ACC > CIT at stage {stage}",
                          "a figure in the paper (no numbers transcribed)", +1,
                          *_difference(inputs.predictions("ours", stage, cross.stream),
                                       inputs.predictions("cit", stage, cross.stream), "ACC", n_boot))
             for stage in stages[inputs.training.shared_stages:]]
    rows = {method: conflict.correctness_by_stage(inputs.profile, inputs.backbone, cross.stream, method, stages,
                                                  inputs.training.seeds) for method in ("ours", "cit")}
    for measure, expected in (("A", +1), ("BWT", +1), ("F", -1)):  # less forgetting is better
        found.append(claims.Claim(
            "cross-domain", f"Ours {claims.CONTINUAL_MEASURES[measure]} ({measure}) {'>' if expected > 0 else '<'} CIT",
            "the paper's continual-learning aim (not a number it prints)", expected,
            *claims.continual_difference(rows["ours"], rows["cit"], measure, n_boot, with_p=True)))
    return found


def _real_revision_claims(inputs: ReportInputs, n_boot: int) -> list:
    """The external check: on the real-revision stream, Ours against CIT at every stage after the
    shared one, and against each other method at the last stage."""
    real = inputs.notebook_params["05b_real_revisions"]
    if "ours" not in real.methods or not inputs.has("05b_real_revisions"):
        return []
    stages = sorted(int(s) for s in inputs.table("05b_real_revisions")["stage"].unique())
    pairs = [(rival, stage) for stage in stages[inputs.training.shared_stages:] for rival in ["cit"]
             if rival in real.methods]
    pairs += [(rival, stages[-1]) for rival in real.methods if rival not in ("ours", "cit")]
    return [claims.Claim("real revisions", f"Ours ACC > {claims.PAPER_METHODS.get(rival, rival)} at stage {stage}",
                         "not in the paper (an external check)", +1,
                         *_difference(inputs.predictions("ours", stage, real.stream),
                                      inputs.predictions(rival, stage, real.stream), "ACC", n_boot))
            for rival, stage in pairs]


def _retention_claims(inputs: ReportInputs, n_boot: int) -> list:
    """CIT forgets round after round (its KRR on the held-out stage-1 facts falls from stage 2 to the
    last); every other method of notebook 07 retains more than CIT at the last stage."""
    retention, stages, first = inputs.notebook_params["07_retention"], inputs.stages, inputs.first_retention
    second, last = stages[min(1, len(stages) - 1)], stages[-1]

    def retention_rows(method: str, stage: int) -> pd.DataFrame:
        return inputs.predictions(method, stage, retention.stream, "heldout")

    found = [claims.Claim("retention", f"CIT's KRR falls from stage {second} to stage {last}",
                          "stated in the paper (figure)", -1,
                          *claims.krr_difference(first, retention_rows("cit", last), retention_rows("cit", second),
                                                 n_boot, with_p=True))]
    for method in [m for m in retention.methods if m != "cit"]:
        found.append(claims.Claim(
            "retention", f"{claims.PAPER_METHODS.get(method, method)} KRR > CIT at stage {last}",
            "stated for Ours (figure)" if method == "ours" else "not stated", +1,
            *claims.krr_difference(first, retention_rows(method, last), retention_rows("cit", last), n_boot,
                                   with_p=True)))
    return found


def _general_claims(inputs: ReportInputs, n_boot: int) -> list:
    """The abstract's "preserving general knowledge": Ours against CIT on the general set (facts the
    backbone knew before any stage, never trained) at every stage after the shared one."""
    main = inputs.notebook_params["04_domain_independent"]
    if not {"ours", "cit"} <= set(main.methods):
        return []
    return [claims.Claim("general knowledge", f"Ours ACC on the general set > CIT at stage {stage}",
                         "stated in the abstract", +1,
                         *_difference(inputs.predictions("ours", stage, main.stream, "general"),
                                      inputs.predictions("cit", stage, main.stream, "general"), "ACC", n_boot))
            for stage in inputs.stages[inputs.training.shared_stages:]]


def _budget_claims(inputs: ReportInputs, n_boot: int) -> list:
    """The budget axis's claims (:func:`mscl.evaluation.budgets.budget_claims`), when the profile has one."""
    if not params_path(inputs.profile, "04b_budget_axis").is_file():
        return []
    return budgets.budget_claims(inputs.profile, inputs.backbone, n_boot)


def paper_claims(inputs: ReportInputs, n_boot: int = claims.CLAIMS_BOOTSTRAP) -> list:
    """Every claim of the paper these runs can check (:class:`mscl.evaluation.claims.Claim`): the pilot's
    decline, Ours against every baseline of the main table, the ablations' pairs, the cross-domain
    stream, the real-revision stream, held-out retention, general knowledge and the budget axis, one
    Holm family."""
    found = [*_pilot_claims(inputs, n_boot), *_main_table_claims(inputs, n_boot), *_ablation_claims(inputs, n_boot),
             *_cross_domain_claims(inputs, n_boot), *_real_revision_claims(inputs, n_boot),
             *_retention_claims(inputs, n_boot),
             *_general_claims(inputs, n_boot), *_budget_claims(inputs, n_boot)]
    if len(found) > claims.HOLM_FAMILY_MAX:
        raise ValueError(f"{len(found)} claims: raise mscl.evaluation.claims.CLAIMS_BOOTSTRAP and HOLM_FAMILY_MAX")
    return found
