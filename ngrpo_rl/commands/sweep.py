"""``ngrpo-rl sweep``: a Tune sweep over config fields, ranked by held-out Pass@k AUC, with a heatmap.

    ngrpo-rl sweep                                     NGRPO's epsilon_pos x epsilon_neg, 4 x 4 x 2 seeds
    ngrpo-rl sweep --grid epsilon_pos=0.2,0.28 --grid epsilon_neg=0.16,0.2 --seeds 0 --iterations 20
    ngrpo-rl sweep --search optuna --range epsilon_pos=0.1:0.4 --range epsilon_neg=0.05:0.3 --num-samples 24
    ngrpo-rl sweep --scheduler asha --evaluation-every 20   stop poor trials early
    ngrpo-rl sweep --output-dir runs/sweep             rerun after an interruption: it resumes

The trials share the comparison study's settings (``ngrpo_rl.study.jobs``); their records and the
heatmap go under --results-dir/sweep and the summary into --report beside the study.
"""

from __future__ import annotations

import argparse

from ngrpo_rl.commands import study_options

HELP = "sweep config fields (default: NGRPO's epsilons) with Tune, ranked by held-out Pass@k AUC"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ngrpo_rl.study.sweep import DEFAULT_GRID, SCHEDULERS, SEARCHES

    default = " ".join(f"{k}={','.join(map(str, v))}" for k, v in DEFAULT_GRID.items())
    parser.add_argument("--variant", default="ngrpo", help="the variant the fields are set on (default ngrpo)")
    parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                        help=f"values of a field for a grid search (repeat per field; default {default})")
    parser.add_argument("--range", action="append", default=[], dest="ranges", metavar="FIELD=LOW:HIGH",
                        help="a uniform range of a field for --search random or optuna")
    parser.add_argument("--search", default="grid", choices=sorted(SEARCHES), help="default grid")
    parser.add_argument("--num-samples", type=int, default=16, help="points a random or optuna search draws")
    parser.add_argument("--scheduler", default="fifo", choices=sorted(SCHEDULERS),
                        help="fifo runs every trial to the end; asha stops poor ones at evaluations")
    parser.add_argument("--evaluation-every", type=int, default=0, metavar="N",
                        help="also evaluate every N iterations (needed by asha; default: only at the end)")
    study_options.add_arguments(parser, iterations=200, seeds=(0, 1), run_dir="runs/sweep")


def run(args: argparse.Namespace) -> int:
    from ngrpo_rl.registry import UnknownNameError
    from ngrpo_rl.study.sweep import (
        DEFAULT_GRID,
        SweepSpec,
        parse_grid,
        parse_ranges,
        run_sweep,
    )
    from ngrpo_rl.study.tuning import SpecMismatchError

    try:
        grid = parse_grid(args.grid) if args.grid else dict(DEFAULT_GRID)
        spec = SweepSpec(
            job=study_options.shared_job(args), variant=args.variant, grid=grid,
            ranges=parse_ranges(args.ranges), search=args.search, num_samples=args.num_samples,
            scheduler=args.scheduler, evaluation_every=args.evaluation_every, **study_options.run_options(args),
        )
    except (UnknownNameError, KeyError, ValueError) as error:
        raise SystemExit(f"ngrpo-rl sweep: {error}") from None
    try:
        result = run_sweep(
            spec, run_dir=args.output_dir, results_dir=args.results_dir, report=args.report,
            command=study_options.command_line(),
        )
    except SpecMismatchError as error:
        raise SystemExit(f"ngrpo-rl sweep: {error}") from None
    if result.interrupted:
        return 130
    return 1 if result.missing else 0
