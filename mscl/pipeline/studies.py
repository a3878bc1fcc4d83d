"""Studies on finished stages that set a knob of the method: who rewrites the training questions.

:func:`rewriter_scale_study` is the measurement behind ``augment.rewriter_scale``
(``notebooks/03b_augmentation.ipynb``, table ``reports/tables/03b_rewriter_scale.md``): the model
after the shared CIT stage rewrites the training questions of a later stage's validation facts
(never an evaluation fact's), with a share of its
fine-tuning delta since the backbone, and the rewrites are counted by what the degenerate-output
filters make of them (:func:`mscl.core.augment.rewriter_scale_counts`). It samples only; nothing is
trained but the shared stage, where it is not finished yet.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from mscl import benchmark
from mscl.benchmark.probe import ensure_benchmark
from mscl.common.params import TrainingParams
from mscl.common.paths import SHARED_METHOD
from mscl.core.augment import rewriter_scale_counts
from mscl.engine.models import load_backbone, lora_target_weights
from mscl.pipeline.stages import finished_model, run_stage, stage_seed


def rewriter_scale_study(profile: str, stream: str, stage: int, *, scales: Sequence[float], questions: int,
                         params: TrainingParams, backbone: str | None = None) -> pd.DataFrame:
    """Round 1 of every rewrite strategy at each of ``scales``, on the training questions of the first
    ``questions`` validation facts of ``stage`` (the split every choice reads), written by the model
    after CIT's stage 1 (the stage every method shares; trained first where it is not finished) with
    the seeds ``ours`` uses at ``stage``. One row per
    scale and strategy: ``generated``, ``usable`` (past the degenerate-output filters, before
    selection) and the count of each degenerate reason that applied at least once."""
    backbone = backbone or params.backbone
    run_stage(profile, stream, SHARED_METHOD, 1, params=params, backbone=backbone, verbose=False)
    sets = benchmark.stage_sets(ensure_benchmark(profile, params.data_seed), stream, stage)
    validation_facts = {r.fact_id for r in sets["validation"]}
    records = [r for r in sets["train"] if r.fact_id in validation_facts][:questions]
    if not records:
        raise ValueError(f"{stream} stage {stage} of profile {profile} has no validation fact to rewrite: the "
                         "rewriter-scale study reads the validation split alone")
    untuned, _ = load_backbone(backbone, seed=params.data_seed)
    backbone_weights = lora_target_weights(untuned, params.train.lora.target_modules)  # W0 of W0 + s (W - W0)
    del untuned
    model, tokenizer = finished_model(profile, stream, SHARED_METHOD, 1, params=params, backbone=backbone)
    rows = rewriter_scale_counts(model, tokenizer, records, scales=scales, params=params,
                                 seed=stage_seed(params.seed, stage), backbone_weights=backbone_weights)
    table = pd.DataFrame(rows)
    return table.loc[:, (table != 0).any()]  # reasons that never applied are left out
