"""Quickstart: NGRPO on the bundled arithmetic task with the tiny model, in about a minute on a CPU.

    .venv/bin/python examples/quickstart.py

The first run warm-starts the tiny model (cached afterwards). Every field of the config can be
changed in one place: try ``.training(advantage_estimator="grpo")`` to see NGRPO without its
virtual reward.
"""

import ray

from ngrpo_rl import NGRPOConfig

ray.init(num_cpus=2, include_dashboard=False)

config = (
    NGRPOConfig()
    .environment("ngrpo_rl/Arithmetic-v0", env_config={"levels": [3, 4], "seed": 0, "num_problems": 10000})
    .training(group_size=8, prompts_per_step=16, lr=1e-4, num_epochs=1, minibatch_size=64)
    .generation(max_new_tokens=8)
    .evaluation(evaluation_num_problems=50, evaluation_samples_per_problem=4, evaluation_ks=(1, 2, 4))
    .debugging(seed=0)
)
algo = config.build_algo()
print(algo.evaluate_pass_at_k().format_table("pass@k before training:"))
for _ in range(5):
    result = algo.train()
    print(
        f"iteration {result['training_iteration']}: reward {result['reward']['mean']:.3f}, "
        f"all-wrong groups {result['groups']['frac_all_incorrect']:.2f}, "
        f"advantage min {result['advantages']['min']:+.3f}, "
        f"clipped above/below {result['clip']['upper_frac']:.3f}/{result['clip']['lower_frac']:.3f}"
    )
print(algo.evaluate_pass_at_k().format_table("pass@k after training:"))
checkpoint = algo.save_to_path("runs/quickstart/checkpoint")
print(f"saved to {checkpoint}")
algo.stop()
ray.shutdown()
