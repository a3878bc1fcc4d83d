"""In-process measurements: trainer throughput, PBL against CIT, FLOP/s against the matmul peak,
and batched generation."""
from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from pathlib import Path

import torch

from mscl.perf.machine import Setup, _token_count


def _time_ours(s: Setup, epochs: int, workdir: Path) -> float:
    from mscl.engine.models import attach_lora
    from mscl.engine.training import PackedCollator, StageTrainer, build_examples, training_arguments

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

    from mscl.engine.models import format_prompt, response_suffix

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
    from mscl.engine.training import build_examples

    tokens = _token_count(build_examples(s.tokenizer, s.records, s.params.train.max_length)) * epochs
    ours, trl = [], []
    for _ in range(repeats):  # alternating, so drift in the machine's speed hits both
        ours.append(_time_ours(s, epochs, workdir))
        trl.append(_time_trl(s, epochs, workdir))
    t_ours, t_trl = statistics.median(ours), statistics.median(trl)
    return {"tokens": tokens, "ours_seconds": ours, "trl_seconds": trl,
            "ours_tokens_per_s": tokens / t_ours, "trl_tokens_per_s": tokens / t_trl,
            "train_throughput_ratio_vs_trl": t_trl / t_ours}


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
    BLAS PyTorch links, MKL here) and of oneDNN's packed linear (:mod:`mscl.engine.packed_linear`, what
    the models compute with); each run for about ``seconds``."""
    from mscl.engine import packed_linear

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

    from mscl.engine import packed_linear
    from mscl.engine.models import encode_prompt

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

    from mscl.engine.models import attach_lora
    from mscl.engine.training import build_examples, pack_examples, response_logps

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

    from mscl.engine.generation import sample_responses

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


