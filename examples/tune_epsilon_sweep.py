"""A Ray Tune grid over NGRPO's asymmetric clip ranges on the bundled task.

    .venv/bin/python examples/tune_epsilon_sweep.py [--iterations 3]

Each trial reserves the CPUs of its generation workers (``default_resource_request``), so Tune
schedules them on a 2-core machine one after another. TensorBoard shows every trial, with the swept
fields as HParams: ``tensorboard --logdir runs/tune_epsilon_sweep``.
"""

import argparse
import os

import ray
from ray import tune

from ngrpo_rl import NGRPO, NGRPOConfig

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=3)
args = parser.parse_args()

ray.init(num_cpus=2, include_dashboard=False)
param_space = (
    NGRPOConfig()
    .environment("ngrpo_rl/Arithmetic-v0", env_config={"levels": [3, 4], "seed": 0, "num_problems": 10000})
    .training(
        group_size=8,
        prompts_per_step=16,
        lr=1e-4,
        num_epochs=1,
        minibatch_size=64,
        epsilon_pos=tune.grid_search([0.2, 0.28]),
        epsilon_neg=tune.grid_search([0.16, 0.2]),
    )
    .generation(max_new_tokens=8)
    .debugging(seed=0)
)
tuner = tune.Tuner(
    NGRPO,
    param_space=param_space,
    tune_config=tune.TuneConfig(metric="reward/mean", mode="max"),
    run_config=tune.RunConfig(
        stop={"training_iteration": args.iterations},
        storage_path=os.path.abspath("runs/tune_epsilon_sweep"),
        verbose=1,
    ),
)
results = tuner.fit()
best = results.get_best_result()
print(
    f"best trial: epsilon_pos={best.config['epsilon_pos']}, epsilon_neg={best.config['epsilon_neg']}, "
    f"reward {best.metrics['reward']['mean']:.3f}"
)
print("tensorboard --logdir runs/tune_epsilon_sweep")
ray.shutdown()
