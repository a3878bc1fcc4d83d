"""The one interface every continual-learning method implements.

A method is a small strategy object (Avalanche-style): the stage loop in :mod:`mscl.pipeline.stages` owns
data, evaluation and bookkeeping; a method only says what the model is at the start of a stage and
how it learns the stage. Adding a method means adding one file here and one line in the registry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import set_seed

from mscl.common.timing import timed
from mscl.engine.models import attach_lora, load_adapter, merge_lora, save_adapter
from mscl.engine.training import build_examples, train_lora

TENSORBOARD = "tensorboard"  # a stage's TensorBoard event files, beside its manifest (make tensorboard)


@dataclass
class StageContext:
    """What a method sees of the stage it trains."""
    stream: str
    stage: int
    stage_dir: Path                  # this stage's folder; the method saves its state here
    previous_dirs: list[Path]        # folders of stages 1..N-1 of the same method, in order
    params: Any                      # mscl.common.params.TrainingParams
    tokenizer: Any
    sets: dict[str, list]            # "train", "eval", "edited", "retention", "history", "general" records
    seed: int
    # the backbone's LoRA-target weights before any stage was merged (mscl.engine.models.lora_target_weights),
    # when the method asks for them (Method.needs_backbone_weights)
    backbone_weights: dict | None = None
    # fact id -> the fact's answers at earlier stages that revisions replaced (mscl.benchmark.earlier_answers)
    earlier_answers: dict = field(default_factory=dict)
    # the training records of the stream's stages before this one, in stage order (a replay buffer's source)
    earlier_train: list = field(default_factory=list)
    info: dict = field(default_factory=dict)   # what the method wants saved in the stage's manifest


def phases(ctx: StageContext) -> dict[str, float]:
    """Seconds by phase of the method's part of the stage (K samples, reference scoring, each rewrite
    strategy, MI, indication, gradient steps), saved in the manifest as ``method_info.phases_s``."""
    return ctx.info.setdefault("phases_s", {})


class Method(ABC):
    """A continual-learning method: the model at a stage's start, and how it learns the stage."""

    name: str = ""
    # the sections of training.yaml, beyond backbone/seed/train/eval, that this method reads: a
    # finished stage is reused only while they (and the data) are unchanged
    param_sections: tuple[str, ...] = ()

    # whether the model at a stage's start is exactly the previous stage's finished, evaluated model
    # (so its answers are read from that stage's predictions instead of asked again)
    start_is_previous_model: bool = True

    def __init__(self, params) -> None:
        self.params = params

    def identity(self) -> dict:
        """The parameters this method's results depend on (hashed into every stage's manifest)."""
        from mscl.common.params import to_dict

        everything = to_dict(self.params)
        keys = ("backbone", "seed", "data_seed", "shared_stages", "train", "eval", *self.param_sections)
        return {key: everything[key] for key in keys}

    def needs_backbone_weights(self) -> bool:
        """Whether the stage loop should keep a copy of the backbone's weights in ``ctx.backbone_weights``."""
        return False

    @abstractmethod
    def start_model(self, base_model, ctx: StageContext):
        """The model at the start of stage N: the backbone plus what stages 1..N-1 learned."""

    @abstractmethod
    def train_stage(self, model, ctx: StageContext):
        """Learn ``ctx.sets["train"]`` starting from ``model``; save state under ``ctx.stage_dir``;
        return the model to evaluate."""


class SequentialLoRA(Method):
    """Methods that learn each stage as a LoRA adapter merged into the weights before the next one.

    The model at the start of stage N is the backbone with the adapters of stages 1..N-1 merged in
    order; each stage saves only its adapter (a few MB), never a full copy of the weights.
    """

    def start_model(self, base_model, ctx: StageContext):
        model = base_model
        for folder in ctx.previous_dirs:
            model = merge_lora(load_adapter(model, folder / "adapter"))
        model.eval()
        return model

    def examples(self, model, ctx: StageContext) -> list[dict]:
        """Training examples of the stage (the gold pairs; subclasses add to them)."""
        return build_examples(ctx.tokenizer, ctx.sets["train"], self.params.train.max_length)

    def training_callbacks(self, ctx: StageContext, examples: list[dict]) -> list:
        """``transformers.TrainerCallback``s the method adds to its stage's training (none by default)."""
        return []

    def objective(self):
        """The trainer's loss over sampled responses (:class:`mscl.core.losses.PreferenceObjective`);
        None trains on the gold answers alone."""
        return None

    def train_stage(self, model, ctx: StageContext):
        examples = self.examples(model, ctx)
        set_seed(ctx.seed)
        peft_model = attach_lora(model, self.params.train.lora)
        with timed(phases(ctx), "gradient_steps"):
            ctx.info["log_history"] = train_lora(peft_model, ctx.tokenizer, examples, self.params.train,
                                                 ctx.stage_dir / "trainer", ctx.seed, self.objective(),
                                                 tensorboard_dir=ctx.stage_dir / TENSORBOARD,
                                                 callbacks=self.training_callbacks(ctx, examples))
        save_adapter(peft_model, ctx.stage_dir / "adapter")
        return merge_lora(peft_model)
