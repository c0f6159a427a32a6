"""NGRPO beside GRPO and DAPO on the same budget: held-out pass@k and why each run behaved so.

    .venv/bin/python examples/compare_algorithms.py [--iterations 100] [--algorithms ngrpo grpo dapo]

Each algorithm starts from the same warm-started tiny model and trains on the same problems with
the main job's settings; only the algorithm's own preset differs. The table shows held-out pass@k
after training and, averaged over the run, the share of groups where every response was wrong (GRPO
learns nothing from those; NGRPO does), the share of zero advantages, and the clip fractions.
"""

import argparse

import ray

from ngrpo_rl import cli

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--algorithms", nargs="+", default=["ngrpo", "grpo", "dapo"])
args = parser.parse_args()

ray.init(num_cpus=2, include_dashboard=False)
rows = []
baseline = None
for name in args.algorithms:
    _, config = cli.build_config({**cli.MAIN_JOB, "algorithm": name, "tensorboard": False})
    algo = config.build_algo()
    if baseline is None:
        baseline = algo.evaluate_pass_at_k()
    sums = {"all_wrong": 0.0, "zero_adv": 0.0, "clip_up": 0.0, "clip_low": 0.0}
    for _ in range(args.iterations):
        result = algo.train()
        sums["all_wrong"] += result["groups"]["frac_all_incorrect"]
        sums["zero_adv"] += result.get("advantages", {}).get("frac_zero", 0.0)
        sums["clip_up"] += result.get("clip", {}).get("upper_frac", 0.0)
        sums["clip_low"] += result.get("clip", {}).get("lower_frac", 0.0)
    after = algo.evaluate_pass_at_k()
    rows.append((name, after.overall, {k: v / args.iterations for k, v in sums.items()}))
    algo.stop()

ks = baseline.ks
print(f"{'':<12}" + "".join(f"{'pass@' + str(k):>9}" for k in ks)
      + f"{'all-wrong':>11}{'zero adv':>10}{'clip up':>9}{'clip low':>10}")
print(f"{'warm start':<12}" + "".join(f"{baseline.overall[k]:>9.3f}" for k in ks))
for name, overall, means in rows:
    print(f"{name:<12}" + "".join(f"{overall[k]:>9.3f}" for k in ks)
          + f"{means['all_wrong']:>11.2f}{means['zero_adv']:>10.2f}"
          + f"{means['clip_up']:>9.3f}{means['clip_low']:>10.3f}")
ray.shutdown()
