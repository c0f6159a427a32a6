"""Register your own advantage estimator and compare the built-in ones.

Run: python examples/custom_estimator.py

A registered estimator is selected by name everywhere an estimator name is accepted, e.g.
``advantage_estimator="median_baseline"`` in an algorithm config.
"""

from __future__ import annotations

import torch

from ngrpo_rl import advantages
from ngrpo_rl.component_table import format_component_table


@advantages.register("median_baseline")
def median_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = r_i - median(r) per group. Shapes: [num_groups, group_size] -> [num_groups, group_size]."""
    return rewards - rewards.median(dim=1, keepdim=True).values


def main() -> None:
    rewards = torch.tensor([[0.9, 0.2, 0.5, 1.0, 0.0, 0.7, 0.3, 0.6]])  # e.g. partial credit
    print(f"{'rewards:':16}", [round(r, 3) for r in rewards[0].tolist()])
    for name in ("median_baseline", "grpo", "ngrpo"):
        print(f"{name + ':':16}", [round(a, 3) for a in advantages.compute(name, rewards)[0].tolist()])
    print()
    print(format_component_table(group_size=8))


if __name__ == "__main__":
    main()
