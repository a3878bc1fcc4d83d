"""``make bench`` (``python -m mscl.perf --profile cpu``): the pipeline's speed, measured side by side.

Everything is measured in one run, on the same model and the same training records (the first
``--records`` training records of the domain-independent stream's stage 1), with the profile's
training parameters, because these machines are noisy and only figures taken together compare:

``train_throughput_ratio_vs_trl``
    Training tokens per second of our stage trainer (:class:`mscl.engine.training.StageTrainer`: packed
    rows, logits only where the loss reads them) over stock TRL ``SFTTrainer`` (prompt-completion
    data, completion-only loss, no packing) on the same examples, LoRA config, batch size, learning
    rate and number of steps. Only ``trainer.train()`` is timed (TRL tokenizes in its constructor);
    both are credited with the same token count (prompt + gold answer, our tokenization). Each
    trainer runs ``--repeats`` times, alternating; the medians are compared. Bar: at least 1.0.
``ours_vs_matched_stage_ratio``
    Wall time of a whole Ours stage over a whole ``cit+matched`` stage (CIT on as many examples as
    Ours trains on), each run as the pipeline runs it (``python -m mscl run`` of stage
    ``--stage-number`` of the profile, from the same shared stage 1 in a scratch artifacts folder:
    loading, the old model's answers, the method's phases, the gradient steps, the new model's
    answers on every evaluation set), at training.yaml's epochs. Both train the same number of
    examples, so the ratio is what Ours does around training: K samples, reference scoring, the
    three rewrite strategies, MI, the indication and its packed K-response rows. The same run gives
    the phase table of Ours, ``cit+matched``, PBL and CIT (:func:`mscl.perf.stages.phase_row`). Bar:
    at most 2.
``pbl_vs_cit_cost_ratio``
    Wall time of the whole PBL stage over the whole CIT stage of the same run. Beside it, in the
    details, the training part alone (``train_stage_ratio``): ``method.train_stage`` of PBL over CIT
    on the ``--records`` records from the same start model (PBL's K-sample generation, reference
    scoring and preference-biased training against CIT's plain training), ``--repeats`` runs each in
    alternating order, medians compared. Bar: at most 2.
``matmul_peak_share``
    Training FLOP/s achieved by our loss (forward + backward + AdamW step, the FLOPs counted by
    ``torch.utils.flop_counter.FlopCounterMode`` over one pass, then the pass timed without the
    counter) as a share of the machine's dense fp32 matmul peak, measured in the same run (the best
    of square ``torch.mm`` and square oneDNN packed-linear sizes: on this repo's AMD CPU MKL's sgemm
    reaches less than half of what oneDNN does, see :mod:`mscl.engine.packed_linear`). Aim: at least 0.4
    on CPU. The details (``linear backends``) give each linear shape of the backbone through both.
``batched_generation_speedup``
    K sampled responses (``pbl.k``, ``pbl.max_new_tokens``) to every record: batched as the stage
    loop does it (``eval.batch_size`` rows a forward pass) against a loop that asks the same
    function one question (its K samples) at a time. Both use :func:`mscl.engine.generation.generate`'s own
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
    :class:`~mscl.perf.compute.LinearTimer`; the details give their share of that run, and their own FLOPs over their
    time), the speedup were attention, sampling, norms and Python free.
Also measured, without a bar (it is why ``make reproduce`` runs two 1-thread stage jobs at a time
on a 2-core machine): ``parallel_jobs_throughput``, the training work two 1-thread processes do
side by side per second over what one process with every core does (the same training pass in
each; see :func:`job_parallelism`).

``peak_rss_gib``
    Peak resident memory of one ``python -m mscl run`` stage of the profile (``--stage-method``
    at ``--stage-number``, default ``ours`` at stage 2, the most memory-hungry: augmentation,
    sampling and training; Ours's is the whole-stage comparison's run), in a scratch artifacts
    folder that reuses the cached backbone, the benchmark data and any finished shared stage 1.
    Bar: at most 6 GiB.

The figures, with the bars, the machine and the library versions, go to ``benchmarks.md`` and
``benchmarks.json`` in the profile's reports folder (``reports/`` for ``cpu``).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mscl.common.paths import reports_dir
from mscl.perf.compute import (
    generation_speedup,
    linear_backends,
    matmul_peak,
    pbl_vs_cit,
    train_throughput,
    training_flops,
)
from mscl.perf.machine import BARS, machine, meets, setup
from mscl.perf.stages import (
    OTHER_STAGE_METHODS,
    job_parallelism,
    phase_table,
    stage_peak_rss,
    timed_pass,
    whole_stages,
)


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
        f"Measured by `python -m mscl.perf --profile {results['profile']}` (`make bench`) in one run of "
        f"{results['seconds']:.0f} s on {m['cpu'] or m['platform']} ({m['cpu_count']} cores"
        f"{', ' + m['cpu_vector_isa'] if m.get('cpu_vector_isa') else ''}, torch "
        f"{m['torch']} with {m['torch_threads']} threads{', ' + m['gpu'] if 'gpu' in m else ''}); "
        f"{results['records']} training records. How each figure is measured: `mscl/perf/`.", "",
        *rows, "",
        "## A stage, phase by phase", "", phase_table(results["details"]["whole stages"]["phases_s"]), "",
        "`stage` is the manifest's total; `process` the rest of the subprocess (imports, loading the "
        "backbone); `wall` the two together, the figure the ratios divide. "
        "`ours_vs_matched_stage_ratio` and `pbl_vs_cit_cost_ratio` are whole stages as the pipeline runs them "
        f"(stage {results['details']['whole stages']['stage']} at {results['details']['whole stages']['epochs']:g} "
        "epochs, evaluation included), one run each, in the order of the table below; "
        "`pbl_vs_cit_train_stage_ratio` is the training part alone (sampling, reference "
        "scoring, training), medians of the repeats. `parallel_jobs_throughput`: the training work two "
        "1-thread processes do side by side per second over one process using every core. "
        "Every method's whole stage over CIT's, from the same run (the cost unit of `make reproduce`'s "
        "schedule and of its `--plan`): "
        + ", ".join(f"`{m}` {r:.2f}" for m, r in results["details"]["whole stages"]["cost_vs_cit"].items())
        + ". `packed_linear_*_forward_speedup`: a forward pass of the backbone with its linears through "
        "packed oneDNN over the same pass through `F.linear` (the bench prompts; one token for each of "
        "`eval.batch_size` rows).", "",
        "## Details", "", "```json", detail, "```", "",
        "## Machine", "", "```json", json.dumps(m, indent=2), "```", ""])


def run(profile: str, *, records: int, epochs: int, repeats: int, stage_method: str | None, stage_number: int,
        backbone: str | None = None, out_dir: Path | None = None, other_methods: bool = False) -> dict:
    tic = time.perf_counter()
    s = setup(profile, records, backbone)
    details: dict = {}
    with tempfile.TemporaryDirectory(prefix="mscl-bench-") as tmp:
        tmp = Path(tmp)
        steps = [("training throughput vs TRL", lambda: train_throughput(s, epochs, repeats, tmp / "train")),
                 ("PBL vs CIT training", lambda: pbl_vs_cit(s, repeats, tmp / "methods")),
                 ("whole stages", lambda: whole_stages(profile, stage_number, tmp / "stage", s.params.backbone,
                                                       OTHER_STAGE_METHODS if other_methods else ())),
                 ("matmul peak", matmul_peak),
                 ("linear backends", lambda: linear_backends(s)),
                 ("training FLOP/s", lambda: training_flops(s)),
                 ("batched generation", lambda: generation_speedup(
                     s, details["matmul peak"]["matmul_flops_per_s"], repeats)),
                 ("two 1-thread jobs against one", lambda: job_parallelism(profile, records, s.params.backbone))]
        if stage_method and stage_method != "ours":  # the whole-stage comparison measures ours's
            steps.append(("peak memory of a stage", lambda: stage_peak_rss(profile, stage_method, stage_number,
                                                                            tmp / "peak", s.params.backbone)))
        for i, (name, fn) in enumerate(steps, 1):
            t0 = time.perf_counter()
            print(f"[bench {i}/{len(steps)}] {name} ...", flush=True)
            details[name] = fn()
            print(f"[bench {i}/{len(steps)}] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    figures = {
        "train_throughput_ratio_vs_trl": details["training throughput vs TRL"]["train_throughput_ratio_vs_trl"],
        "pbl_vs_cit_cost_ratio": details["whole stages"]["whole_stage_ratio"],
        "ours_vs_matched_stage_ratio": details["whole stages"]["ours_vs_matched_stage_ratio"],
        "matmul_peak_share": (details["training FLOP/s"]["train_flops_per_s"]
                              / details["matmul peak"]["matmul_flops_per_s"]),
        "batched_generation_speedup": details["batched generation"]["batched_generation_speedup"],
    }
    if stage_method == "ours":
        figures["peak_rss_gib"] = details["whole stages"]["ours_peak_rss_gib"]
    elif stage_method:
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
    parser = argparse.ArgumentParser(prog="python -m mscl.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--records", type=int, default=32, help="training records every benchmark uses")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the trainer comparison")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each trainer, and of the batched generation (medians compared)")
    parser.add_argument("--stage-method", default="ours", help="the stage whose peak memory is measured; '' skips it")
    parser.add_argument("--stage-number", type=int, default=2)
    parser.add_argument("--backbone", default=None, help="override the profile's backbone")
    parser.add_argument("--no-other-methods", dest="other_methods", action="store_false",
                        help="time only ours, cit+matched, pbl and cit as whole stages, not MoCL, F-Learning "
                             "and the baselines beyond the paper")
    parser.add_argument("--timed-pass", action="store_true", help=argparse.SUPPRESS)  # job_parallelism's worker
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.timed_pass:
        print(timed_pass(args.profile, args.records, args.backbone))
        return 0
    run(args.profile, records=args.records, epochs=args.epochs, repeats=args.repeats,
        stage_method=args.stage_method or None, stage_number=args.stage_number, backbone=args.backbone,
        other_methods=args.other_methods)
    return 0

