"""CIT: continual instruction tuning, plain sequential LoRA fine-tuning on each stage's gold answers."""
from mscl.methods.base import SequentialLoRA


class CIT(SequentialLoRA):
    """The paper's main baseline: stage after stage, minimise the gold answers' NLL, nothing else."""

    name = "cit"
