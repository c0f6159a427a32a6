"""``ngrpo-rl compare``: the comparison study, one Tune trial per variant and seed, and its report.

    ngrpo-rl compare                                   the study: 7 variants x 5 seeds x 200 iterations (~20 min on 2 cores)
    ngrpo-rl compare --variants ngrpo grpo --seeds 0 --iterations 3 --set evaluation_num_problems=16
    ngrpo-rl compare --output-dir runs/study           rerun after an interruption: it resumes

Every variant starts from the same warm-started model and generates the same number of responses;
the held-out evaluation after the last iteration, the warm start's, and the per-iteration metrics
are written under --results-dir and summarised in --report (means with 95% intervals, paired
differences against the baseline, the figures).
"""

from __future__ import annotations

import argparse

from ngrpo_rl.commands import study_options

HELP = "compare algorithms and ablations over seeds (Tune), and write docs/results.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ngrpo_rl.study import variants

    parser.add_argument(
        "--variants", nargs="+", default=list(variants.STUDY_VARIANTS), metavar="NAME",
        help=f"variants to train (default: {' '.join(variants.STUDY_VARIANTS)}; registered: "
        f"{', '.join(variants.variants.available())})",
    )
    parser.add_argument("--baseline", default="grpo", help="the variant differences are taken against (default grpo)")
    study_options.add_arguments(parser, iterations=200, seeds=(0, 1, 2, 3, 4), run_dir="runs/study")


def run(args: argparse.Namespace) -> int:
    from ngrpo_rl.registry import UnknownNameError
    from ngrpo_rl.study.comparison import ComparisonSpec, run_comparison
    from ngrpo_rl.study.tuning import SpecMismatchError

    try:
        spec = ComparisonSpec(job=study_options.shared_job(args), variants=tuple(args.variants),
                              baseline=args.baseline, **study_options.run_options(args))
    except (UnknownNameError, ValueError) as error:
        raise SystemExit(f"ngrpo-rl compare: {error}") from None
    if spec.baseline not in spec.variants:
        raise SystemExit(f"ngrpo-rl compare: the baseline {spec.baseline!r} is not among --variants")
    try:
        result = run_comparison(
            spec, run_dir=args.output_dir, results_dir=args.results_dir, report=args.report,
            command=study_options.command_line(),
        )
    except SpecMismatchError as error:
        raise SystemExit(f"ngrpo-rl compare: {error}") from None
    if result.interrupted:
        return 130
    return 1 if result.missing else 0
