"""Several processes, one stage: what the stage loop needs to run under ``accelerate launch``.

``accelerate launch --num_processes N -m mscl run ...`` (or with a config from ``params/accelerate/``)
starts N copies of the same command. Each copy runs :func:`mscl.pipeline.stages.run_stage` in full:

- **training** is data-parallel: ``transformers.Trainer`` sees the launcher's environment and wraps
  the model in DDP (or DeepSpeed, per the config). The per-device batch is
  ``train.batch_size / N`` (:func:`per_device_batch_size`), so the global batch, and with it the
  optimisation, is the same as in one process; the NLL is normalised by the global token count and
  the preference term's mean by the global response count (:func:`global_count`), so the averaged
  gradient equals the single-process one. Exactly so when the example count is a multiple of
  ``train.batch_size``: otherwise accelerate completes the last global batch with repeated
  examples. Logged per-step components (``nll``, ``preference``) are process 0's share;
- **the backbone**: process 0 converts an embedded GGUF into the cache before the others load it;
- **sampling and evaluation** run in every process, identically (they are seeded per batch), so every
  process holds the same preference data and the same metrics without any exchange;
- **files**: process 0 writes the stage folder; every other process writes what it would have
  written into its own scratch folder ``<stage>/rank<r>/`` (so caches such as ``preference.jsonl``
  never race; a restarted stage copies process 0's surviving caches into it, so every process
  reuses the same ones), which process 0 removes when the stage is finished. Processes wait for each other
  (:func:`barrier`) after process 0 prepared the folder and before the stage is reported finished.

In one process (no launcher) every function here is a no-op.
"""
from __future__ import annotations

import os

import torch


def rank() -> int:
    """This process's index among the launched ones (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its machine (which GPU it uses)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    """How many processes run the stage (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def _initialised() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait until every process gets here (initialising the process group from the launcher's
    environment the first time, as ``accelerate`` does)."""
    if world_size() == 1:
        return
    if not _initialised():
        from accelerate import PartialState

        # cpu=True without a GPU: accelerate then uses gloo across the processes (else it would
        # treat the launch as a single process)
        PartialState(cpu=not torch.cuda.is_available())
    torch.distributed.barrier()


def global_count(count: torch.Tensor) -> torch.Tensor:
    """``count`` summed over the processes (``count`` itself in one process)."""
    if world_size() == 1 or not _initialised():
        return count
    total = count.detach().clone()
    torch.distributed.all_reduce(total)
    return total


def per_device_batch_size(batch_size: int, where: str = "train.batch_size") -> int:
    """The batch each process takes so that the global batch stays ``batch_size``."""
    n = world_size()
    if batch_size % n:
        raise ValueError(f"{where}={batch_size} does not split over {n} processes; use a multiple of {n} so "
                         "the global batch stays the same")
    return batch_size // n


def device() -> torch.device:
    """Where this process computes: its GPU (``LOCAL_RANK`` under a launcher), or the CPU. On a GPU,
    fp32 matmuls may use TF32 (bf16 is the default precision there; ``train.dtype: float32`` asks for fp32)."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


class DeviceError(RuntimeError):
    """The machine does not have the devices the profile asks for, or has more than one process can
    use; raised before any data is built or model loaded."""


def check_devices(require_cuda: bool, source: str = "training.yaml") -> None:
    """Refuse, within seconds, a run this machine cannot do as asked:

    - ``require_cuda`` (the gpu profile) without a usable CUDA device: the message names
      ``torch.version.cuda`` and what to check, instead of a silent fall back to the CPU;
    - one process that sees several GPUs: transformers would wrap the model in ``DataParallel``,
      changing the global batch, the warmup and the length groups; use one GPU or ``accelerate
      launch`` (one process per GPU, docs/distributed.md).
    """
    if require_cuda and not torch.cuda.is_available():
        raise DeviceError(
            f"{source} sets require_cuda: true, but torch {torch.__version__} sees no GPU "
            f"(torch.version.cuda = {torch.version.cuda}, torch.cuda.is_available() = False). Check that "
            "`nvidia-smi` lists a GPU, that its driver supports that CUDA version (or install the torch "
            "wheel built for yours), and CUDA_VISIBLE_DEVICES; or run a CPU profile (PROFILE=cpu).")
    if world_size() == 1 and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        raise DeviceError(
            f"one process sees {torch.cuda.device_count()} GPUs: transformers would silently train with "
            "DataParallel (another global batch, warmup and length grouping). Use one GPU "
            "(CUDA_VISIBLE_DEVICES=0) or all of them with `accelerate launch` (docs/distributed.md).")


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any process (``flag`` itself in one process): every rank must call it."""
    if world_size() == 1 or not _initialised():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=torch.device("cuda", local_rank())
                         if torch.cuda.is_available() else "cpu")
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item() > 0)


def shard(items: list) -> list:
    """This process's share of ``items``: every W-th from its rank on (all of them in one process)."""
    return items[rank()::world_size()] if world_size() > 1 else items


def gather_shards(items: list, mine: list) -> list:
    """The results of every process's :func:`shard` of ``items`` (``mine``: this process's), back in
    ``items``' order on every process."""
    if world_size() == 1 or not _initialised():
        return mine
    shares: list = [None] * world_size()
    torch.distributed.all_gather_object(shares, mine)
    out: list = [None] * len(items)
    for r, share in enumerate(shares):
        out[r::world_size()] = share
    return out
