"""``make bench`` (``python -m mscl.bench --profile cpu``): the pipeline's speed, measured side by side.

Everything is measured in one run, on the same model and the same training records (the first
``--records`` training records of the domain-independent stream's stage 1), with the profile's
training parameters, because these machines are noisy and only figures taken together compare:

``train_throughput_ratio_vs_trl``
    Training tokens per second of our stage trainer (:class:`mscl.training.StageTrainer`: packed
    rows, logits only where the loss reads them) over stock TRL ``SFTTrainer`` (prompt-completion
    data, completion-only loss, no packing) on the same examples, LoRA config, batch size, learning
    rate and number of steps. Only ``trainer.train()`` is timed (TRL tokenizes in its constructor);
    both are credited with the same token count (prompt + gold answer, our tokenization). Each
    trainer runs ``--repeats`` times, alternating; the medians are compared. Bar: at least 1.0.
``pbl_vs_cit_cost_ratio``
    Wall time of a whole PBL stage over a whole CIT stage, each run as the pipeline runs it
    (``python -m mscl run`` of stage ``--stage-number`` of the profile, from the same shared stage 1
    in a scratch artifacts folder: loading, the old model's answers, training, the new model's
    answers on every evaluation set). Beside it, in the details, the training part alone
    (``train_stage_ratio``): ``method.train_stage`` of PBL over CIT on the ``--records`` records
    from the same start model (PBL's K-sample generation, reference scoring and preference-biased
    training against CIT's plain training), ``--repeats`` runs each in alternating order, medians
    compared. Bar: at most 2.
``matmul_peak_share``
    Training FLOP/s achieved by our loss (forward + backward + AdamW step, the FLOPs counted by
    ``torch.utils.flop_counter.FlopCounterMode`` over one pass, then the pass timed without the
    counter) as a share of the machine's dense fp32 matmul peak, measured in the same run (the best
    of square ``torch.mm`` and square oneDNN packed-linear sizes: on this repo's AMD CPU MKL's sgemm
    reaches less than half of what oneDNN does, see :mod:`mscl.packed_linear`). Aim: at least 0.4
    on CPU. The details (``linear backends``) give each linear shape of the backbone through both.
``batched_generation_speedup``
    K sampled responses (``pbl.k``, ``pbl.max_new_tokens``) to every record: batched as the stage
    loop does it (``eval.batch_size`` rows a forward pass) against a loop that asks the same
    function one question (its K samples) at a time. Both use :func:`mscl.sampling.generate`'s own
    decoding loop; the details add the same loop through stock ``model.generate``
    (``speedup_vs_stock_loop``). The batched run is timed ``--repeats`` times after one untimed run
    at its own shapes (the first run at a new size pays for fresh memory), the median taken; the loop
    (a call a record, all at the same shapes, after a warm-up call) once. Bar: at least 8. Beside it, without a bar,
    ``batched_generation_ceiling``, an upper bound on what batching could give on this machine: the
    loop's time over the batched run's matmul FLOPs (counted by ``FlopCounterMode`` in a second,
    untimed batched run with the same seed and batches, so the same tokens; the linear layers' and
    the decoding attention's matmuls are counted, ``torch``'s fused CPU attention in the prompt
    passes, softmax, sampling and elementwise work are not) done at the square-matmul peak measured
    in the same run. The details give the batched run's share of that peak
    (``batched_matmul_peak_share``). And ``batched_generation_linear_bound``: the loop's time over
    the time a third batched run spends inside the backbone's linear layers (timed by hooks,
    :class:`LinearTimer`; the details give their share of that run, and their own FLOPs over their
    time), the speedup were attention, sampling, norms and Python free.
Also measured, without a bar (it is why ``make reproduce`` runs two 1-thread stage jobs at a time
on a 2-core machine): ``parallel_jobs_throughput``, the training work two 1-thread processes do
side by side per second over what one process with every core does (the same training pass in
each; see :func:`job_parallelism`).

``peak_rss_gib``
    Peak resident memory of one ``python -m mscl run`` stage of the profile (``--stage-method``
    at ``--stage-number``, default ``ours`` at stage 2, the most memory-hungry: augmentation,
    sampling and training), in a scratch artifacts folder that reuses the cached backbone, the
    benchmark data and any finished shared stage 1. Bar: at most 6 GiB.

The figures, with the bars, the machine and the library versions, go to ``benchmarks.md`` and
``benchmarks.json`` in the profile's reports folder (``reports/`` for ``cpu``).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mscl.paths import REPO_ROOT, artifacts_dir, reports_dir

BARS = {  # key: (comparison, bar)
    "train_throughput_ratio_vs_trl": (">=", 1.0),
    "pbl_vs_cit_cost_ratio": ("<=", 2.0),
    "matmul_peak_share": (">=", 0.4),
    "batched_generation_speedup": (">=", 8.0),
    "peak_rss_gib": ("<=", 6.0),
}


def meets(key: str, value: float) -> bool:
    op, bar = BARS[key]
    return value >= bar if op == ">=" else value <= bar


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    for name in ("transformers", "trl", "peft"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    return info


# --------------------------------------------------------------------------- setup
@dataclasses.dataclass
class Setup:
    profile: str
    params: object            # TrainingParams
    model: object             # the backbone, never modified (every benchmark copies it)
    tokenizer: object
    records: list


def setup(profile: str, n_records: int, backbone: str | None = None) -> Setup:
    from mscl import data
    from mscl.models import load_backbone
    from mscl.params import load_params
    from mscl.stages import ensure_benchmark

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    records = data.stage_sets(ensure_benchmark(profile, params.data_seed), "domain_independent", 1)["train"]
    if len(records) < n_records:
        raise ValueError(f"--records {n_records}: profile {profile!r} has only {len(records)} stage-1 training records")
    model, tokenizer = load_backbone(params.backbone, seed=params.data_seed)
    model.eval()
    return Setup(profile, params, model, tokenizer, records[:n_records])


def _token_count(examples: list[dict]) -> int:
    return sum(len(s["input_ids"]) for ex in examples for s in ex["sequences"] if s["kind"] == "gold")


# --------------------------------------------------------------------------- training throughput
def _time_ours(s: Setup, epochs: int, workdir: Path) -> float:
    from mscl.models import attach_lora
    from mscl.training import PackedCollator, StageTrainer, build_examples, training_arguments

    train = dataclasses.replace(s.params.train, epochs=epochs)
    examples = build_examples(s.tokenizer, s.records, train.max_length)
    model = attach_lora(copy.deepcopy(s.model), train.lora)
    args = training_arguments(train, workdir / "ours", s.params.seed, len(examples))
    args.disable_tqdm = True
    trainer = StageTrainer(model=model, args=args, train_dataset=examples,
                           data_collator=PackedCollator(s.tokenizer.pad_token_id))
    tic = time.perf_counter()
    trainer.train()
    return time.perf_counter() - tic


def _time_trl(s: Setup, epochs: int, workdir: Path) -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from mscl.models import format_prompt, response_suffix

    train = s.params.train
    rows = [{"prompt": format_prompt(s.tokenizer, r.question), "completion": r.answer + response_suffix(s.tokenizer)}
            for r in s.records]
    steps = math.ceil(len(rows) / (train.batch_size * train.grad_accum)) * epochs
    config = SFTConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, num_train_epochs=epochs, learning_rate=train.learning_rate,
        warmup_steps=int(train.warmup_ratio * steps), weight_decay=train.weight_decay, lr_scheduler_type="linear",
        logging_steps=1, save_strategy="no", report_to="none", seed=s.params.seed, max_length=train.max_length,
        packing=False, completion_only_loss=True, dataloader_pin_memory=False, disable_tqdm=True,
        # like ours: fp32, no activation recomputation (SFTConfig defaults to bf16 and gradient
        # checkpointing)
        bf16=False, fp16=False, gradient_checkpointing=False)
    lora = LoraConfig(r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
                      target_modules=list(train.lora.target_modules), task_type="CAUSAL_LM", bias="none")
    trainer = SFTTrainer(model=copy.deepcopy(s.model), args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=s.tokenizer, peft_config=lora)
    tic = time.perf_counter()
    trainer.train()
    return time.perf_counter() - tic


def train_throughput(s: Setup, epochs: int, repeats: int, workdir: Path) -> dict:
    from mscl.training import build_examples

    tokens = _token_count(build_examples(s.tokenizer, s.records, s.params.train.max_length)) * epochs
    ours, trl = [], []
    for _ in range(repeats):  # alternating, so drift in the machine's speed hits both
        ours.append(_time_ours(s, epochs, workdir))
        trl.append(_time_trl(s, epochs, workdir))
    t_ours, t_trl = statistics.median(ours), statistics.median(trl)
    return {"tokens": tokens, "ours_seconds": ours, "trl_seconds": trl,
            "ours_tokens_per_s": tokens / t_ours, "trl_tokens_per_s": tokens / t_trl,
            "train_throughput_ratio_vs_trl": t_trl / t_ours}


# --------------------------------------------------------------------------- PBL vs CIT
def pbl_vs_cit(s: Setup, repeats: int, workdir: Path) -> dict:
    from mscl.methods import StageContext, get_method

    seconds: dict[str, list[float]] = {"cit": [], "pbl": []}
    for i in range(repeats):
        for name in ("cit", "pbl") if i % 2 == 0 else ("pbl", "cit"):  # alternating order
            method = get_method(name, s.params)
            stage_dir = workdir / f"{name}{i}"  # a fresh folder: PBL samples again, nothing is cached
            stage_dir.mkdir(parents=True, exist_ok=True)
            ctx = StageContext(stream="domain_independent", stage=2, stage_dir=stage_dir, previous_dirs=[],
                               params=s.params, tokenizer=s.tokenizer, sets={"train": s.records},
                               seed=s.params.seed)
            model = method.start_model(copy.deepcopy(s.model), ctx)
            tic = time.perf_counter()
            method.train_stage(model, ctx)
            seconds[name].append(time.perf_counter() - tic)
    return {"cit_seconds": seconds["cit"], "pbl_seconds": seconds["pbl"],
            "train_stage_ratio": statistics.median(seconds["pbl"]) / statistics.median(seconds["cit"])}


# --------------------------------------------------------------------------- FLOP/s against the matmul peak
def _rate(fn, flops: float, seconds: float) -> float:
    """FLOP/s of ``fn`` (``flops`` each call), called for about ``seconds`` after one warm-up call."""
    fn()
    iters, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        fn()
        iters += 1
    return flops * iters / (time.perf_counter() - tic)


def matmul_peak(sizes=(1024, 2048), seconds: float = 2.0) -> dict:
    """The machine's dense fp32 matmul peak: the best FLOP/s over square sizes of ``torch.mm`` (the
    BLAS PyTorch links, MKL here) and of oneDNN's packed linear (:mod:`mscl.packed_linear`, what
    the models compute with); each run for about ``seconds``."""
    from mscl import packed_linear

    by_backend: dict = {"torch.mm": {}}
    if packed_linear.available():
        by_backend["onednn packed"] = {}
    with torch.no_grad():
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            by_backend["torch.mm"][n] = _rate(lambda: torch.mm(a, b), 2 * n ** 3, seconds)
            if "onednn packed" in by_backend:
                w = packed_linear.pack(b)
                by_backend["onednn packed"][n] = _rate(lambda: packed_linear.packed_linear(a, w), 2 * n ** 3, seconds)
    best = {name: max(rates.values()) for name, rates in by_backend.items()}
    return {"matmul_flops_per_s": max(best.values()), "best_by_backend": best, "by_backend_and_size": by_backend}


def linear_backends(s: Setup, seconds: float = 0.5) -> dict:
    """Each distinct linear shape of the backbone through ``F.linear`` (MKL) and through the packed
    oneDNN copy (FLOP/s), at ``pbl.k`` rows (one question's K samples, a decoding step) and
    ``eval.batch_size`` rows (a batched step); then whole forward passes of the backbone both ways,
    on the same inputs (the bench questions' prompts, and one token for each of ``eval.batch_size``
    rows), so the same work."""
    import torch.nn.functional as F

    from mscl import packed_linear
    from mscl.models import encode_prompt

    if not packed_linear.available():
        return {"available": False}
    rows = (s.params.pbl.k, s.params.eval.batch_size)
    shapes = sorted({tuple(m.weight.shape) for m in s.model.modules() if isinstance(m, torch.nn.Linear)})
    by_shape = {}
    with torch.no_grad():
        for n_out, n_in in shapes:
            w = torch.randn(n_out, n_in)
            packed = packed_linear.pack(w)
            for r in rows:
                x, flops = torch.randn(r, n_in), 2 * r * n_in * n_out
                entry = {"f_linear_flops_per_s": _rate(lambda: F.linear(x, w), flops, seconds),
                         "packed_flops_per_s": _rate(lambda: packed_linear.packed_linear(x, packed), flops, seconds)}
                entry["packed_speedup"] = entry["packed_flops_per_s"] / entry["f_linear_flops_per_s"]
                by_shape[f"{n_in}->{n_out} x{r}"] = entry
    prompts = s.tokenizer.pad({"input_ids": [encode_prompt(s.tokenizer, r.question) for r in s.records]},
                              return_tensors="pt")
    step = torch.full((rows[1], 1), s.tokenizer.eos_token_id)
    forwards = {}
    for name, fn in (("prompts", lambda: s.model(**prompts, logits_to_keep=1)),
                     ("one_token_rows", lambda: s.model(input_ids=step))):
        times = {}
        with torch.no_grad():
            for mode in ("packed", "f_linear", "packed", "f_linear"):  # alternating, best of two
                (packed_linear.enable if mode == "packed" else packed_linear.disable)(s.model)
                fn()
                tic = time.perf_counter()
                fn()
                times[mode] = min(times.get(mode, math.inf), time.perf_counter() - tic)
        packed_linear.enable(s.model)
        forwards[name] = {"packed_seconds": times["packed"], "f_linear_seconds": times["f_linear"],
                          "packed_speedup": times["f_linear"] / times["packed"]}
    forwards["prompts"]["shape"] = list(prompts["input_ids"].shape)
    forwards["one_token_rows"]["shape"] = list(step.shape)
    return {"available": True, "by_shape": by_shape, "model_forward": forwards}


def training_flops(s: Setup, count: bool = True) -> dict:
    """Achieved FLOP/s of one pass of our loss over the records (batch ``train.batch_size``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mscl.models import attach_lora
    from mscl.training import build_examples, pack_examples, response_logps

    train = s.params.train
    examples = build_examples(s.tokenizer, s.records, train.max_length)
    batches = [pack_examples(examples[i : i + train.batch_size], s.tokenizer.pad_token_id)
               for i in range(0, len(examples), train.batch_size)]
    model = attach_lora(copy.deepcopy(s.model), train.lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=train.learning_rate)

    def one_pass():
        for batch in batches:
            logps = response_logps(model, batch)
            gold = batch["is_gold"]
            loss = -logps[gold].sum() / batch["n_tokens"][gold].sum()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    one_pass()  # warm-up
    flops = None
    if count:
        counter = FlopCounterMode(display=False)
        with counter:
            one_pass()
        flops = counter.get_total_flops()
    times = []
    for _ in range(2):
        tic = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - tic)
    if flops is None:
        return {"train_pass_seconds": min(times)}
    return {"train_flops_per_pass": flops, "train_pass_seconds": min(times),
            "train_flops_per_s": flops / min(times)}


# --------------------------------------------------------------------------- two 1-thread jobs against one
def _timed_pass(profile: str, records: int, backbone: str | None) -> float:
    """Seconds of one training pass of our loss over the bench records, in this process."""
    s = setup(profile, records, backbone)
    return training_flops(s, count=False)["train_pass_seconds"]


def job_parallelism(profile: str, records: int, backbone: str | None) -> dict:
    """Training work per second of two 1-thread processes running side by side over one process
    with every core (``os.cpu_count()`` threads), each doing the same training pass."""
    cores = os.cpu_count() or 1

    def launch(threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "mscl.bench", "--profile", profile, "--records", str(records),
                   "--timed-pass"] + (["--backbone", backbone] if backbone else [])
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)

    def seconds(proc) -> float:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the timed training pass failed (exit {proc.returncode})")
        return float(out.strip().splitlines()[-1])

    alone = seconds(launch(cores))
    pair = [launch(1), launch(1)]
    side_by_side = [seconds(p) for p in pair]
    return {"cores": cores, "one_job_seconds": alone, "two_1_thread_jobs_seconds": side_by_side,
            "parallel_jobs_throughput": 2 * alone / max(side_by_side)}


# --------------------------------------------------------------------------- generation
class LinearTimer:
    """Wall time spent inside a model's linear layers while the block runs, timed by forward hooks:
    every ``nn.Linear`` (the LM head included) and every PEFT adapter layer (a LoRA layer and the
    linears it computes through are one call, the outer one). ``flops`` adds up the matmul FLOPs of
    the ``nn.Linear`` calls, inner ones included (2 x rows x in x out). On a GPU each hook
    synchronises first, so the time is the kernels', not their launches'."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.seconds, self.calls, self.flops = model, 0.0, 0, 0
        self._depth, self._start, self._handles, self._cuda = 0, 0.0, [], False

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def _enter(self, module, args) -> None:
        if isinstance(module, torch.nn.Linear) and args and torch.is_tensor(args[0]):
            self.flops += 2 * args[0].numel() * module.out_features
        if self._depth == 0:
            self._sync()
            self._start = time.perf_counter()
        self._depth += 1

    def _leave(self, module, args, output) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._sync()
            self.seconds += time.perf_counter() - self._start
            self.calls += 1

    def __enter__(self) -> "LinearTimer":
        try:
            from peft.tuners.tuners_utils import BaseTunerLayer
            kinds: tuple = (torch.nn.Linear, BaseTunerLayer)
        except ImportError:
            kinds = (torch.nn.Linear,)
        self._depth = 0
        self._cuda = any(p.is_cuda for p in self.model.parameters())
        for m in self.model.modules():
            if isinstance(m, kinds):  # the post-hook runs even when the forward raises
                self._handles += [m.register_forward_pre_hook(self._enter),
                                  m.register_forward_hook(self._leave, always_call=True)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def generation_speedup(s: Setup, matmul_flops_per_s: float, repeats: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from mscl.sampling import sample_responses

    pbl = s.params.pbl
    questions = [r.question for r in s.records]
    kw = dict(k=pbl.k, temperature=pbl.temperature, top_p=pbl.top_p, max_new_tokens=pbl.max_new_tokens,
              seed=s.params.seed)
    def batched_run():
        sample_responses(s.model, s.tokenizer, questions, batch_size=s.params.eval.batch_size, **kw)

    sample_responses(s.model, s.tokenizer, questions[:2], batch_size=pbl.k, **kw)  # warm-up, the loop's shapes
    batched_run()                                                                  # and the batched ones
    batched_times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        batched_run()
        batched_times.append(time.perf_counter() - tic)
    batched = statistics.median(batched_times)
    loops = {}
    for backend in ("auto", "hf"):
        tic = time.perf_counter()
        for q in questions:
            sample_responses(s.model, s.tokenizer, [q], batch_size=pbl.k, backend=backend, **kw)
        loops[backend] = time.perf_counter() - tic
    out = {"questions": len(questions), "k": pbl.k, "max_new_tokens": pbl.max_new_tokens,
           "rows_per_pass": s.params.eval.batch_size,
           "batched_seconds": batched, "batched_runs_seconds": batched_times, "one_at_a_time_seconds": loops["auto"],
           "stock_generate_one_at_a_time_seconds": loops["hf"], "speedup_vs_stock_loop": loops["hf"] / batched,
           "batched_generation_speedup": loops["auto"] / batched}
    # An upper bound on what batching could give here: the loop's time over the batched run's counted
    # FLOPs (FlopCounterMode counts the matmuls; attention, softmax, sampling and elementwise work are
    # not counted) done at the square-matmul peak. A second batched run with the same seed and
    # batches draws the same tokens as the timed one, so it does the same work.
    with FlopCounterMode(display=False) as counter:
        sample_responses(s.model, s.tokenizer, questions, batch_size=s.params.eval.batch_size, **kw)
    flops = counter.get_total_flops()
    if flops:  # none counted when generation runs outside torch (vLLM)
        out.update(batched_matmul_flops=flops, batched_matmul_flops_per_s=flops / batched,
                   batched_matmul_peak_share=flops / batched / matmul_flops_per_s,
                   batched_generation_ceiling=loops["auto"] / (flops / matmul_flops_per_s))
    # How much of the batched run is its linear layers, timed by hooks in a third run (same tokens):
    # the loop's time over theirs is the speedup if everything else (attention, sampling, norms,
    # Python) took no time at all.
    with LinearTimer(s.model) as linears:
        tic = time.perf_counter()
        batched_run()
        hooked = time.perf_counter() - tic
    if linears.calls:  # none when generation bypasses the model's modules (vLLM)
        out.update(batched_linear_seconds=linears.seconds, batched_linear_calls=linears.calls,
                   batched_linear_share=linears.seconds / hooked, batched_linear_flops=linears.flops,
                   batched_linear_flops_per_s=linears.flops / linears.seconds,
                   batched_generation_linear_bound=loops["auto"] / linears.seconds)
    return out


# --------------------------------------------------------------------------- whole stages, as subprocesses
def scratch_artifacts(profile: str, params, workdir: Path) -> Path:
    """A scratch artifacts folder for stage runs of ``profile``: the cached backbones (linked), the
    benchmark data (copied) and the shared stages, copied when already trained, else trained here
    first (so no timed run pays for them)."""
    from mscl.stages import ensure_benchmark, finished_stage_dir, run_dir

    ensure_benchmark(profile, params.data_seed)
    scratch = workdir / "artifacts"
    scratch.mkdir(parents=True, exist_ok=True)
    real = artifacts_dir()
    if (real / "models").is_dir() and not (scratch / "models").exists():
        (scratch / "models").symlink_to((real / "models").resolve(), target_is_directory=True)
    if not (scratch / "data" / profile).exists():
        shutil.copytree(real / "data" / profile, scratch / "data" / profile)
    for stream_stage in range(1, params.shared_stages + 1):
        target = run_dir(profile, params.backbone, "domain_independent", "cit", stream_stage, scratch / "runs",
                         seed=params.seed)
        if target.exists():
            continue
        try:
            done = finished_stage_dir(profile, params.backbone, "domain_independent", "cit", stream_stage,
                                      seed=params.seed)
            shutil.copytree(done, target)
        except FileNotFoundError:
            run_stage_process(profile, "cit", stream_stage, scratch, params.backbone)
    return scratch


def run_stage_process(profile: str, method: str, stage: int, scratch: Path, backbone: str) -> dict:
    """``python -m mscl run`` of one stage in the ``scratch`` artifacts folder: its wall time, its
    own peak RSS (``wait4``) and its manifest's timings."""
    from mscl.io import read_json
    from mscl.params import load_params
    from mscl.stages import finished_stage_dir

    command = [sys.executable, "-m", "mscl", "run", "--profile", profile, "--stream", "domain_independent",
               "--method", method, "--stage", str(stage), "--backbone", backbone]
    env = {**os.environ, "MSCL_ARTIFACTS": str(scratch)}
    log = scratch / f"{method}-stage{stage}.log"
    tic = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - tic
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read_text()[-3000:]}")
    seed = load_params(profile, "training").seed
    folder = finished_stage_dir(profile, backbone, "domain_independent", method, stage, scratch / "runs", seed=seed)
    manifest = read_json(folder / "manifest.json")  # CIT's for a shared stage
    return {"seconds": seconds, "peak_rss_gib": usage.ru_maxrss / 2 ** 20, "timings_s": manifest["timings_s"]}


def whole_stages(profile: str, stage: int, workdir: Path, backbone: str | None = None) -> dict:
    """A CIT and a PBL stage ``stage`` as the pipeline runs them (``python -m mscl run``: loading,
    the old model's answers, training, the new model's answers on every evaluation set), from the
    same shared stage 1; PBL first, then CIT."""
    from mscl.params import load_params

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    if stage != params.shared_stages + 1:  # one stage each, from the shared ones (a later stage would time a chain)
        raise ValueError(f"--stage-number {stage}: the whole-stage comparison runs the first stage after the "
                         f"{params.shared_stages} shared one(s), stage {params.shared_stages + 1}")
    scratch = scratch_artifacts(profile, params, workdir)
    runs = {m: run_stage_process(profile, m, stage, scratch, params.backbone) for m in ("pbl", "cit")}
    return {"stage": stage, "cit_seconds": runs["cit"]["seconds"], "pbl_seconds": runs["pbl"]["seconds"],
            "cit_timings_s": runs["cit"]["timings_s"], "pbl_timings_s": runs["pbl"]["timings_s"],
            "whole_stage_ratio": runs["pbl"]["seconds"] / runs["cit"]["seconds"]}


def stage_peak_rss(profile: str, method: str, stage: int, workdir: Path, backbone: str | None = None) -> dict:
    """Run one stage as ``python -m mscl run`` in a scratch artifacts folder; its peak RSS (GiB)."""
    from mscl.params import load_params

    params = load_params(profile, "training")
    if backbone:
        params = dataclasses.replace(params, backbone=backbone)
    run = run_stage_process(profile, method, stage, scratch_artifacts(profile, params, workdir), params.backbone)
    return {"stage": f"{method} stage {stage}", "stage_seconds": run["seconds"], "peak_rss_gib": run["peak_rss_gib"]}


# --------------------------------------------------------------------------- the report
def render(results: dict) -> str:
    rows = ["| figure | value | bar | met |", "|---|---|---|---|"]
    for key, (op, bar) in BARS.items():
        if key in results["figures"]:
            value = results["figures"][key]
            rows.append(f"| `{key}` | {value:.3g} | {op} {bar:g} | {'yes' if meets(key, value) else '**no**'} |")
    for key, value in results.get("extra", {}).items():
        rows.append(f"| `{key}` | {value:.3g} | — | — |")
    detail = json.dumps(results["details"], indent=2, default=str)
    m = results["machine"]
    return "\n".join([
        f"# Benchmarks ({results['profile']} profile, backbone {results['backbone']})", "",
        f"Measured by `python -m mscl.bench --profile {results['profile']}` (`make bench`) in one run of "
        f"{results['seconds']:.0f} s on {m['cpu'] or m['platform']} ({m['cpu_count']} cores, torch "
        f"{m['torch']} with {m['torch_threads']} threads{', ' + m['gpu'] if 'gpu' in m else ''}); "
        f"{results['records']} training records. How each figure is measured: `mscl/bench.py`.", "",
        *rows, "",
        "`pbl_vs_cit_cost_ratio` is a whole stage as the pipeline runs it (evaluation included), one run "
        "each, PBL first; `pbl_vs_cit_train_stage_ratio` is the training part alone (sampling, reference "
        "scoring, training), medians of the repeats. `parallel_jobs_throughput`: the training work two "
        "1-thread processes do side by side per second over one process using every core. "
        "`packed_linear_*_forward_speedup`: a forward pass of the backbone with its linears through "
        "packed oneDNN over the same pass through `F.linear` (the bench prompts; one token for each of "
        "`eval.batch_size` rows).", "",
        "## Details", "", "```json", detail, "```", "",
        "## Machine", "", "```json", json.dumps(m, indent=2), "```", ""])


def run(profile: str, *, records: int, epochs: int, repeats: int, stage_method: str | None, stage_number: int,
        backbone: str | None = None, out_dir: Path | None = None) -> dict:
    tic = time.perf_counter()
    s = setup(profile, records, backbone)
    details: dict = {}
    with tempfile.TemporaryDirectory(prefix="mscl-bench-") as tmp:
        tmp = Path(tmp)
        steps = [("training throughput vs TRL", lambda: train_throughput(s, epochs, repeats, tmp / "train")),
                 ("PBL vs CIT training", lambda: pbl_vs_cit(s, repeats, tmp / "methods")),
                 ("PBL vs CIT whole stage", lambda: whole_stages(profile, stage_number, tmp / "stage",
                                                                 s.params.backbone)),
                 ("matmul peak", matmul_peak),
                 ("linear backends", lambda: linear_backends(s)),
                 ("training FLOP/s", lambda: training_flops(s)),
                 ("batched generation", lambda: generation_speedup(
                     s, details["matmul peak"]["matmul_flops_per_s"], repeats)),
                 ("two 1-thread jobs against one", lambda: job_parallelism(profile, records, s.params.backbone))]
        if stage_method:
            steps.append(("peak memory of a stage", lambda: stage_peak_rss(profile, stage_method, stage_number,
                                                                            tmp / "peak", s.params.backbone)))
        for i, (name, fn) in enumerate(steps, 1):
            t0 = time.perf_counter()
            print(f"[bench {i}/{len(steps)}] {name} ...", flush=True)
            details[name] = fn()
            print(f"[bench {i}/{len(steps)}] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    figures = {
        "train_throughput_ratio_vs_trl": details["training throughput vs TRL"]["train_throughput_ratio_vs_trl"],
        "pbl_vs_cit_cost_ratio": details["PBL vs CIT whole stage"]["whole_stage_ratio"],
        "matmul_peak_share": (details["training FLOP/s"]["train_flops_per_s"]
                              / details["matmul peak"]["matmul_flops_per_s"]),
        "batched_generation_speedup": details["batched generation"]["batched_generation_speedup"],
    }
    if stage_method:
        figures["peak_rss_gib"] = details["peak memory of a stage"]["peak_rss_gib"]
    extra = {"pbl_vs_cit_train_stage_ratio": details["PBL vs CIT training"]["train_stage_ratio"],
             "parallel_jobs_throughput": details["two 1-thread jobs against one"]["parallel_jobs_throughput"]}
    for key in ("batched_generation_ceiling", "batched_generation_linear_bound"):
        if key in details["batched generation"]:
            extra[key] = details["batched generation"][key]
    if details["linear backends"]["available"]:
        forward = details["linear backends"]["model_forward"]
        extra["packed_linear_prompt_forward_speedup"] = forward["prompts"]["packed_speedup"]
        extra["packed_linear_step_forward_speedup"] = forward["one_token_rows"]["packed_speedup"]
    results = {"profile": profile, "backbone": s.params.backbone, "records": records, "machine": machine(),
               "seconds": time.perf_counter() - tic, "figures": figures, "extra": extra,
               "met": {k: meets(k, v) for k, v in figures.items()}, "details": details}
    out = out_dir or reports_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps({**figures, **extra, "met": results["met"],
                                                     "machine": results["machine"], "details": details},
                                                    indent=2, default=str) + "\n")
    (out / "benchmarks.md").write_text(render(results))
    for key, value in figures.items():
        op, bar = BARS[key]
        print(f"{key:32s} {value:10.3f}   bar {op} {bar:g}   {'met' if meets(key, value) else 'NOT MET'}")
    print(f"wrote {out / 'benchmarks.md'} and {out / 'benchmarks.json'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mscl.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--records", type=int, default=32, help="training records every benchmark uses")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the trainer comparison")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each trainer, and of the batched generation (medians compared)")
    parser.add_argument("--stage-method", default="ours", help="the stage whose peak memory is measured; '' skips it")
    parser.add_argument("--stage-number", type=int, default=2)
    parser.add_argument("--backbone", default=None, help="override the profile's backbone")
    parser.add_argument("--timed-pass", action="store_true", help=argparse.SUPPRESS)  # job_parallelism's worker
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.timed_pass:
        print(_timed_pass(args.profile, args.records, args.backbone))
        return 0
    run(args.profile, records=args.records, epochs=args.epochs, repeats=args.repeats,
        stage_method=args.stage_method or None, stage_number=args.stage_number, backbone=args.backbone)
    return 0


if __name__ == "__main__":
    sys.exit(main())
