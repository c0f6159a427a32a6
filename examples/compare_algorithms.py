"""NGRPO beside GRPO and DAPO on the same budget, with Ray Tune: held-out pass@k and why each run
behaved so.

    .venv/bin/python examples/compare_algorithms.py [--iterations 30] [--seeds 0] [--variants ngrpo grpo dapo]

A small comparison study (``ngrpo_rl.study``): every variant starts from the same warm-started tiny
model and generates the same number of responses, with the main job's settings; only the
algorithm's own preset differs. The table shows held-out Pass@k AUC and pass@1 after training (mean
over seeds) and, averaged over the run, the share of groups where every response was wrong (GRPO
learns nothing from those; NGRPO does) and the clip fractions. The full study, with every baseline,
the paper's ablations, 5 seeds and the paired intervals, is ``ngrpo-rl compare`` (docs/results.md).
"""

import argparse
import time

from ngrpo_rl import cli
from ngrpo_rl.study import ComparisonSpec, run_comparison, study_job
from ngrpo_rl.study.report import load_study

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=30)
parser.add_argument("--seeds", type=int, nargs="+", default=[0])
parser.add_argument("--variants", nargs="+", default=["ngrpo", "grpo", "dapo"])
args = parser.parse_args()

folder = f"runs/compare_algorithms/{time.strftime('%Y%m%d-%H%M%S')}"
spec = ComparisonSpec(job=study_job(cli.MAIN_JOB), variants=tuple(args.variants), seeds=tuple(args.seeds),
                      iterations=args.iterations, baseline=args.variants[0])
run_comparison(spec, run_dir=folder, results_dir=f"{folder}/results", report=f"{folder}/results.md")

summary = load_study(f"{folder}/results").summary
print(f"\n{'':<22}{'AUC':>7}{'pass@1':>8}{'all-wrong':>11}{'clip up':>9}{'clip low':>10}")
warm = summary.warm_start
print(f"{'warm start':<22}{warm.auc:>7.1f}{warm.overall[1]:>8.3f}")
for name, variant in summary.variants.items():
    means = variant.run_means
    print(f"{name:<22}{variant.outcomes['pass_at_k_auc'].mean:>7.1f}{variant.outcomes['pass_at_1'].mean / 100:>8.3f}"
          f"{means['groups/frac_all_incorrect']:>11.2f}{means['clip/upper_frac']:>9.3f}{means['clip/lower_frac']:>10.3f}")
print(f"report: {folder}/results.md")
