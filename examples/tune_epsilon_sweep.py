"""A Ray Tune grid over NGRPO's asymmetric clip ranges on the bundled task, ranked by held-out
Pass@k AUC, with a heatmap.

    .venv/bin/python examples/tune_epsilon_sweep.py [--iterations 3]

A small version of ``ngrpo-rl sweep`` (``ngrpo_rl.study.sweep``): a 2 x 2 grid, one seed, 16 prompts
per iteration and a short held-out evaluation. Each trial reserves the CPUs of its generation
workers, so Tune runs as many at once as the machine has CPUs. TensorBoard shows every trial, with
the swept fields as HParams: ``tensorboard --logdir runs/tune_epsilon_sweep``. Rerunning the same
command after an interruption resumes the sweep.
"""

import argparse
import os

from ngrpo_rl import cli
from ngrpo_rl.study import SweepSpec, run_sweep, study_job

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=3)
args = parser.parse_args()

folder = f"runs/tune_epsilon_sweep/{args.iterations}-iterations"
job = study_job(cli.MAIN_JOB, {"prompts_per_step": 16, "evaluation_num_problems": 64,
                               "evaluation_samples_per_problem": 8, "evaluation_ks": (1, 2, 4, 8)})
spec = SweepSpec(job=job, grid={"epsilon_pos": (0.2, 0.28), "epsilon_neg": (0.16, 0.2)}, seeds=(0,),
                 iterations=args.iterations)
result = run_sweep(spec, run_dir=folder, results_dir=f"{folder}/results", report=f"{folder}/results.md")
if not result.interrupted:
    print(f"best trial: {result.best} (held-out Pass@k AUC); heatmap: "
          f"{os.path.join(folder, 'results', 'sweep', 'heatmap.png')}")
print("tensorboard --logdir runs/tune_epsilon_sweep")
