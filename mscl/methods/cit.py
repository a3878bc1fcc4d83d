"""CIT: continual instruction tuning, plain sequential LoRA fine-tuning on each stage's gold answers."""
from __future__ import annotations

from mscl.common.io import read_json
from mscl.methods.base import SequentialLoRA, StageContext


class CIT(SequentialLoRA):
    """The paper's main baseline: stage after stage, minimise the gold answers' NLL, nothing else."""

    name = "cit"


class ComputeMatchedCIT(CIT):
    """CIT with as many training examples a stage as ``ours`` trained on at the same stage and seed:
    the gold pairs repeated in order (the last pass partial) up to ours's gold + kept rewrites, so the
    same number of optimizer steps. It separates "more training" from "the method": ``ours`` trains
    on about twice CIT's examples. It reads ours's finished stage, so that stage must exist first."""

    name = "cit+matched"
    reference = "ours"   # the method whose example count is matched

    def reference_examples(self, ctx: StageContext) -> int:
        """How many examples the reference method trained on at this stage: gold + kept rewrites."""
        folder = ctx.stage_dir
        if folder.name.startswith("rank"):   # a launcher's scratch folder (mscl.common.dist)
            folder = folder.parent
        manifest_path = folder.parent.parent / self.reference / folder.name / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{self.name} matches {self.reference}'s training examples at stage {ctx.stage}, but "
                f"{manifest_path} does not exist: run `python -m mscl run --stream {ctx.stream} --method "
                f"{self.reference} --stage {ctx.stage}` (same profile and seed) first")
        info = read_json(manifest_path)["method_info"]
        return len(ctx.sets["train"]) + info.get("augmentation", {}).get("kept", 0)

    def examples(self, model, ctx: StageContext) -> list[dict]:
        gold = super().examples(model, ctx)
        target = max(len(gold), self.reference_examples(ctx))
        ctx.info["matched"] = {"reference": self.reference, "examples": target, "gold": len(gold)}
        return [gold[i % len(gold)] for i in range(target)]
