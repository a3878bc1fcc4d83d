"""Command line: ``python -m mscl run --profile cpu --stream domain_independent --method pbl [--stage N]``.

``python -m mscl sweep --profile cpu [--setting NAME]`` runs the pilot's budget sweep (every setting,
or one; :mod:`mscl.pipeline.pilot`) and prints its table. ``python -m mscl choose --profile cpu --study
loss_variant [--setting NAME]`` does the same for a knob chosen by measurement (:mod:`mscl.pipeline.choices`).
``python -m mscl budget --profile cpu --budget e2 --method ours`` trains the budget axis at one budget
(:mod:`mscl.pipeline.budgets`). ``python -m mscl evaluate ... --mode authors`` asks a finished stage's
questions under the other evaluation mode (:func:`mscl.evaluation.tables.mode_predictions`).

Runs one stage of one method (and any earlier stage not finished yet) through the same code path
the notebooks call (:func:`mscl.pipeline.stages.run_stage`); without ``--stage`` it runs the whole stream.
Finished stages are reused, so the command can be repeated after a kill. ``--seed`` picks the
training seed (``training.yaml``'s ``seed`` by default).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROFILES = ["smoke", "cpu", "gpu"]
STREAMS = ["domain_independent", "cross_domain", "real_revisions"]


def _stage_arguments(command, *, methods: bool = False, seed: bool = True) -> None:
    """The arguments that name a stage: profile, stream, method(s), stage, seed and backbone."""
    command.add_argument("--profile", required=True, choices=PROFILES)
    command.add_argument("--stream", required=True, choices=STREAMS)
    if methods:
        command.add_argument("--method", required=True, nargs="+", help="method names (see mscl.methods)")
        command.add_argument("--stage", type=int, default=None, help="stop after this stage (default: all)")
    else:
        command.add_argument("--method", required=True)
        command.add_argument("--stage", type=int, required=True)
    if seed:
        command.add_argument("--seed", type=int, default=None,
                             help="training seed (default: training.yaml's seed; the data keeps its data_seed)")
    command.add_argument("--backbone", default=None, help="override the profile's backbone")


def _settings_arguments(command, key: str, help_text: str, required: bool = False) -> None:
    """The arguments of a study trained for a rule: profile, its settings, backbone."""
    command.add_argument("--profile", required=True, choices=PROFILES)
    command.add_argument(key, default=None, nargs="+", required=required, help=help_text)
    command.add_argument("--backbone", default=None, help="override the profile's backbone")


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job ``make reproduce`` runs, and ``clean``."""
    root = argparse.ArgumentParser(prog="python -m mscl", description=__doc__.splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)
    _stage_arguments(sub.add_parser("run", help="run (or reuse) stages of methods on one stream"), methods=True)
    sweep = sub.add_parser("sweep", help="run (or reuse) the pilot's budget sweep (mscl/pipeline/pilot.py)")
    _settings_arguments(sweep, "--setting", "only these settings (names as in the table)")
    choose = sub.add_parser("choose", help="run (or reuse) a study of mscl.pipeline.choices (06_ablations.yaml)")
    _settings_arguments(choose, "--setting", "only these settings")
    choose.add_argument("--study", required=True, help="a study under `choices` in 06_ablations.yaml")
    evaluate = sub.add_parser("evaluate", help="ask a finished stage's evaluation questions under another "
                                               "evaluation mode (cached beside its predictions)")
    _stage_arguments(evaluate)
    evaluate.add_argument("--mode", required=True, choices=["greedy", "authors"])
    budget = sub.add_parser("budget", help="run (or reuse) the budget axis at one budget (mscl.pipeline.budgets)")
    _settings_arguments(budget, "--budget", "budgets of 04b_budget_axis.yaml", required=True)
    budget.add_argument("--method", required=True, nargs="+", help="methods of 04b_budget_axis.yaml")
    clean = sub.add_parser("clean", help="remove a stage and every stage that depends on it (mscl.pipeline.clean)")
    _stage_arguments(clean)
    clean.add_argument("--runs-root", default=None, type=Path, help="a runs folder other than <artifacts>/runs")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    commands = {"run": _run, "sweep": _sweep, "choose": _choose, "evaluate": _evaluate, "budget": _budget,
                "clean": _clean}
    return commands[args.command](args)


def _run(args) -> int:
    from mscl.common import dist
    from mscl.common.params import load_params
    from mscl.evaluation.tables import results_table
    from mscl.pipeline.stages import run_stage, run_stream

    params = load_params(args.profile, "training")
    if args.seed is not None:
        params = params.with_seed(args.seed)
    manifests = []
    for method in args.method:
        if args.stage is None:
            manifests += run_stream(args.profile, args.stream, method, params=params, seeds=[params.seed],
                                    backbone=args.backbone)
        else:
            manifests.append(run_stage(args.profile, args.stream, method, args.stage, params=params,
                                       backbone=args.backbone))
    if dist.is_main():
        print(results_table(manifests).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return 0


def _clean(args) -> int:
    from mscl.common.params import load_params
    from mscl.pipeline.clean import remove_stage

    params = load_params(args.profile, "training")
    remove_stage(args.profile, args.backbone or params.backbone, args.stream, args.method, args.stage,
                 params.seed if args.seed is None else args.seed, args.runs_root)
    return 0


def _budget(args) -> int:
    from mscl.pipeline import budgets

    for budget in args.budget:
        for method in args.method:
            manifests = budgets.run_budget(args.profile, budget, method, args.backbone)
            print(f"budget {budget}, {method}: {len(manifests)} stages finished under "
                  f"{budgets.budget_root(args.profile, budget)}")
    return 0


def _sweep(args) -> int:
    from mscl.common.params import load_params
    from mscl.pipeline import pilot

    grid = pilot.settings(load_params(args.profile, "02_pilot"))
    names = [s.name for s in grid]
    unknown = sorted(set(args.setting or []) - set(names))
    if unknown:
        raise SystemExit(f"unknown sweep setting(s) {', '.join(unknown)}; params/{args.profile}/02_pilot.yaml "
                         f"gives {', '.join(names)}")
    for setting in grid:
        if args.setting is None or setting.name in args.setting:
            pilot.run_setting(args.profile, setting, args.backbone)
    if args.setting is None:
        from mscl.evaluation.picks import sweep_table

        print(sweep_table(args.profile, args.backbone).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return 0


def _evaluate(args) -> int:
    from mscl.common.params import load_params
    from mscl.evaluation.tables import mode_predictions

    params = load_params(args.profile, "training")
    params = params.with_seed(params.seed if args.seed is None else args.seed)
    rows = mode_predictions(args.profile, args.stream, args.method, args.stage, args.mode, params=params,
                            backbone=args.backbone)
    print(f"{args.method} stage {args.stage} seed {params.seed}, {args.mode}: ACC "
          f"{100 * sum(bool(r['correct']) for r in rows) / max(1, len(rows)):.1f}% of {len(rows)}")
    return 0


def _choose(args) -> int:
    from mscl.pipeline import choices

    known = choices.studies(args.profile)
    if args.study not in known:
        raise SystemExit(f"unknown study {args.study!r}; params/{args.profile}/06_ablations.yaml has "
                         f"{', '.join(known) or 'none'}")
    names = list(known[args.study].settings)
    unknown = sorted(set(args.setting or []) - set(names))
    if unknown:
        raise SystemExit(f"unknown setting(s) {', '.join(unknown)} of {args.study}; it has {', '.join(names)}")
    for name in args.setting or names:
        choices.run_setting(args.profile, args.study, name, args.backbone)
    if args.setting is None:
        from mscl.evaluation.picks import choice_table

        print(choice_table(args.profile, args.study, args.backbone)
              .to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
