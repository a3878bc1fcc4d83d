"""PBL: the preference-based learning bias (the paper's first component).

Before training a stage, the model at the stage's start samples K responses to every training
question; they are split into Y_align and Y_conflict against the gold answer
(:mod:`mscl.core.preference`) and scored once by that same frozen model (the reference). Training then
minimises ``nll_weight * NLL(gold) + preference_weight * (alpha * L_PP + beta * L_NP)``
(:mod:`mscl.engine.training`, :func:`mscl.core.losses.preference_bias_loss`).

The paper's other two parts are switches (:class:`SelfDistillation`), so the full method and every
ablation are configurations of one code path, on PBL (``PBL_VARIANTS``) or on CIT (``CIT_VARIANTS``:
the paper's augmentation and selection ablations, whose "No augmentation" row is CIT), registered by
name:

==================  ======================  ==================================================
name                augmentation            selection of the augmented pairs
==================  ======================  ==================================================
``pbl``             none                    -
``pbl+bki``         BKI                     all non-degenerate (``all``)
``pbl+lce``         LCE                     all
``pbl+pa``          PA                      all
``pbl+ca``          BKI + LCE + PA (CA)     all
``pbl+ca+rs50``     CA                      random 50% (``random``; also rs25, rs12.5)
``ours``            CA                      dynamic: MI and LLM indication (``dynamic``)
``cit+bki`` ...     as ``pbl+bki`` ...      the same, on CIT (no learning bias)
``cit+ca+ds``       CA                      dynamic (the paper's "DS" row)
==================  ======================  ==================================================

Before sampling, the model at the stage's start rewrites the training questions
(:func:`mscl.core.augment.self_distillation`); the selected pairs (x', y) join the stage's training
records: they are trained on with the gold answer and, with ``augment.preference``, get K sampled
responses and the preference bias like every training question. They are kept in the stage folder
(``augmented.jsonl``; every candidate with its fate in ``augment_candidates.jsonl``; the counts in
``augmentation.json`` and in the manifest's ``method_info.augmentation``) and reused after a restart.
"""
from __future__ import annotations

import contextlib

import torch
from transformers import TrainerCallback

from mscl.common.io import read_json, read_jsonl, write_json, write_jsonl
from mscl.common.timing import timed
from mscl.core.augment import STRATEGIES, augmented_record_from_row, record_row, self_distillation
from mscl.core.losses import PreferenceObjective
from mscl.core.preference import build_preference_data, split_summary
from mscl.engine.training import build_examples, reference_logps
from mscl.methods.base import SequentialLoRA, StageContext, phases
from mscl.methods.cit import CIT


class AugmentationError(RuntimeError):
    """An augmenting stage kept no rewrite at all (``require_kept_rewrites``)."""


class SelfDistillation:
    """The paper's second and third parts as a mix-in: before a stage, the model at its start rewrites
    the training questions (``strategies``) and the selected pairs (x', y) join the stage's records."""

    strategies: tuple[str, ...] = ()   # augmentation strategies (mscl.core.augment.STRATEGIES); () = no augmentation
    selection: str = "all"             # how augmented pairs are selected (mscl.core.selection.SELECTION_MODES)
    keep_fraction: float = 1.0         # the fraction random selection keeps

    def augmented_records(self, model, ctx: StageContext) -> list:
        """The selected augmented pairs of the stage (none without strategies); cached in
        ``augmented.jsonl``, which is written last, so its presence means the stage's augmentation
        files are complete and a restarted stage does not augment again."""
        if not self.strategies:
            return []
        path, summary_path = ctx.stage_dir / "augmented.jsonl", ctx.stage_dir / "augmentation.json"
        if path.is_file() and summary_path.is_file():
            ctx.info["augmentation"] = read_json(summary_path)
            return [augmented_record_from_row(row) for row in read_jsonl(path)]
        result = self_distillation(model, ctx.tokenizer, ctx.sets["train"], strategies=self.strategies,
                                   selection=self.selection, keep_fraction=self.keep_fraction, params=self.params,
                                   seed=ctx.seed, backbone_weights=ctx.backbone_weights,
                                   earlier_answers=ctx.earlier_answers)
        write_jsonl(ctx.stage_dir / "augment_candidates.jsonl", [c.row() for c in result.candidates])
        if not result.records and self.params.require_kept_rewrites:
            raise AugmentationError(
                f"{ctx.stage_dir}: self-distillation kept none of its {result.summary.get('generated', 0)} rewrites "
                f"({result.summary.get('degenerate', 0)} degenerate; the candidates and why each was dropped are in "
                "augment_candidates.jsonl), so this stage would train as if it did not augment. Move "
                "augment.rewriter_scale toward 0 (notebooks/03b_augmentation.ipynb measures usable rewrites per "
                "scale), loosen augment.mi_quantile, mi_min or indication_f1, or set require_kept_rewrites: false "
                "in training.yaml to allow it")
        phases(ctx).update(result.summary.get("phases_s", {}))
        write_json(summary_path, result.summary)
        write_jsonl(path, [record_row(r) for r in result.records])
        ctx.info["augmentation"] = result.summary
        return result.records

    def needs_backbone_weights(self) -> bool:
        return bool(self.strategies) and self.params.augment.rewriter_scale < 1.0


class PBL(SelfDistillation, SequentialLoRA):
    """Sequential LoRA with the preference-based learning bias added to the gold NLL."""

    name = "pbl"

    def preference_rows(self, model, ctx: StageContext, records=None) -> list[dict]:
        """Sampled, split and reference-scored responses to ``records`` (default: the stage's training
        records) from the model at the stage's start; cached in ``preference.jsonl`` so a restarted
        stage does not sample again (the file is written atomically, whole or not at all)."""
        records = ctx.sets["train"] if records is None else records
        path = ctx.stage_dir / "preference.jsonl"
        if path.is_file():
            return read_jsonl(path)
        rows = self.draw(model, ctx, records, ctx.seed, reference=contextlib.nullcontext)
        write_jsonl(path, rows)
        return rows

    def draw(self, model, ctx: StageContext, records, seed: int, reference) -> list[dict]:
        """K responses to each of ``records`` sampled from ``model``, split against the gold answer and
        scored by the frozen reference: ``model`` itself inside the ``reference()`` context (the
        stage-start model; for a LoRA model being trained, its adapter disabled)."""
        pbl = self.params.pbl
        with timed(phases(ctx), "sample"):
            rows = build_preference_data(model, ctx.tokenizer, records, k=pbl.k,
                                         temperature=pbl.temperature, top_p=pbl.top_p,
                                         max_new_tokens=pbl.max_new_tokens,
                                         batch_size=self.params.eval.batch_size, seed=seed)
        examples = build_examples(ctx.tokenizer, records, self.params.train.max_length, rows)
        with timed(phases(ctx), "reference"), reference():
            reference_logps(model, ctx.tokenizer, examples, self.params.eval.batch_size)
        for row, ex in zip(rows, examples):
            for resp, seq in zip(row["responses"], ex["sequences"][1:]):
                resp["ref_logp"] = seq["ref_logp"]
        return rows

    def examples(self, model, ctx: StageContext) -> list[dict]:
        # augmentation first: it and the sampling both use the model at the stage's start
        records = list(ctx.sets["train"]) + self.augmented_records(model, ctx)
        sampled = records if self.params.augment.preference else ctx.sets["train"]
        rows = self.preference_rows(model, ctx, sampled)
        ctx.info["preference_split"] = split_summary(rows)
        self._stage_records = (records, sampled)
        return build_examples(ctx.tokenizer, records, self.params.train.max_length, rows)

    def training_callbacks(self, ctx: StageContext, examples: list[dict]) -> list:
        if self.params.pbl.resample != "every_epoch":
            return []
        return [OnPolicySamples(self, ctx, *self._stage_records, examples)]

    def objective(self):
        return PreferenceObjective.from_params(self.params.pbl)

    @property
    def param_sections(self) -> tuple[str, ...]:
        return ("pbl", "augment") if self.strategies else ("pbl",)


class OnPolicySamples(TrainerCallback):
    """``pbl.resample: every_epoch``: before every epoch after the first, redraw the K samples from the
    model being trained, so that aligned samples can appear as a revised answer is learned; the
    reference stays the stage-start model (the LoRA adapter disabled). The split of each epoch's
    samples goes to the manifest (``preference_split_by_epoch``)."""

    def __init__(self, method: PBL, ctx: StageContext, records: list, sampled: list, examples: list[dict]):
        self.method, self.ctx, self.records, self.sampled, self.examples = method, ctx, records, sampled, examples
        ctx.info["preference_split_by_epoch"] = [ctx.info["preference_split"]]

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        epoch = round(state.epoch or 0)
        if epoch == 0:
            return
        model.eval()
        with torch.no_grad():
            rows = self.method.draw(model, self.ctx, self.sampled, self.ctx.seed * 100 + epoch,
                                    reference=model.disable_adapter)
        model.train()
        params = self.method.params
        self.examples[:] = build_examples(self.ctx.tokenizer, self.records, params.train.max_length, rows)
        self.ctx.info["preference_split_by_epoch"].append(split_summary(rows))


class AugmentedCIT(SelfDistillation, CIT):
    """CIT on the gold pairs plus the selected self-distilled pairs, with no learning bias: the
    paper's augmentation and selection ablations sit on CIT (their "No augmentation" row is CIT)."""

    name = "cit+augmented"

    def examples(self, model, ctx: StageContext) -> list[dict]:
        records = list(ctx.sets["train"]) + self.augmented_records(model, ctx)
        return build_examples(ctx.tokenizer, records, self.params.train.max_length)

    @property
    def param_sections(self) -> tuple[str, ...]:
        return ("augment",) if self.strategies else ()


def variant(base: type, name: str, strategies: tuple[str, ...], selection: str = "all",
            keep_fraction: float = 1.0) -> type:
    """``base`` (PBL or AugmentedCIT) with the given augmentation strategies and selection, as a
    method class called ``name`` (its own registry entry and run folder)."""
    doc = (f"{'PBL' if issubclass(base, PBL) else 'CIT'} + {'+'.join(s.upper() for s in strategies)} "
           f"augmentation, {selection} selection"
           + (f" keeping {keep_fraction:.1%}" if selection == "random" else "") + ".")
    return type(f"{base.__name__}({name})", (base,), {"name": name, "strategies": tuple(strategies),
                                                      "selection": selection, "keep_fraction": keep_fraction,
                                                      "__doc__": doc, "__module__": __name__})


def pbl_variant(name: str, strategies: tuple[str, ...], selection: str = "all",
                keep_fraction: float = 1.0) -> type[PBL]:
    """PBL with the given augmentation strategies and selection (:func:`variant`)."""
    return variant(PBL, name, strategies, selection, keep_fraction)


PBL_VARIANTS: tuple[type[PBL], ...] = (
    pbl_variant("pbl+bki", ("bki",)),
    pbl_variant("pbl+lce", ("lce",)),
    pbl_variant("pbl+pa", ("pa",)),
    pbl_variant("pbl+ca", STRATEGIES),
    pbl_variant("pbl+ca+rs50", STRATEGIES, "random", 0.5),
    pbl_variant("pbl+ca+rs25", STRATEGIES, "random", 0.25),
    pbl_variant("pbl+ca+rs12.5", STRATEGIES, "random", 0.125),
    pbl_variant("ours", STRATEGIES, "dynamic"),
)

# the paper's augmentation and selection ablations: the same switches on CIT
CIT_VARIANTS: tuple[type[AugmentedCIT], ...] = (
    variant(AugmentedCIT, "cit+bki", ("bki",)),
    variant(AugmentedCIT, "cit+lce", ("lce",)),
    variant(AugmentedCIT, "cit+pa", ("pa",)),
    variant(AugmentedCIT, "cit+ca", STRATEGIES),
    variant(AugmentedCIT, "cit+ca+rs50", STRATEGIES, "random", 0.5),
    variant(AugmentedCIT, "cit+ca+rs25", STRATEGIES, "random", 0.25),
    variant(AugmentedCIT, "cit+ca+rs12.5", STRATEGIES, "random", 0.125),
    variant(AugmentedCIT, "cit+ca+ds", STRATEGIES, "dynamic"),
)
