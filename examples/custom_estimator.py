"""Register your own advantage estimator, with a parameter of its own, and select it from a config.

Run: python examples/custom_estimator.py

A registered estimator is selected by name everywhere an estimator name is accepted, e.g.
``advantage_estimator="median_baseline"`` in an algorithm config. ``params=`` declares where each of
its keywords comes from: a config field (``"std_normalize"``) or a parameter of its own
(``Param``), whose value the config's ``component_kwargs`` field gives and ``validate()`` checks.
"""

from __future__ import annotations

import torch

from ngrpo_rl import advantages
from ngrpo_rl.component_table import format_component_table
from ngrpo_rl.settings import Param, above


@advantages.register(
    "median_baseline",
    params={
        "std_normalize": "std_normalize",  # the config field of the same name
        "scale": Param(float, 1.0, "multiplies every advantage", above(0)),  # its own parameter
    },
    min_group_size=2,  # validate() refuses group_size=1 with this estimator
)
def median_baseline(rewards: torch.Tensor, *, std_normalize: bool = True, scale: float = 1.0) -> torch.Tensor:
    """A_i = scale * (r_i - median(r)) per group, divided by the group std with std_normalize.

    Shapes: [num_groups, group_size] -> [num_groups, group_size].
    """
    centered = rewards - rewards.median(dim=1, keepdim=True).values
    if std_normalize:
        centered = centered / (rewards.std(dim=1, keepdim=True) + 1e-6)
    return scale * centered


def main() -> None:
    from ngrpo_rl.algorithms import NGRPOConfig

    rewards = torch.tensor([[0.9, 0.2, 0.5, 1.0, 0.0, 0.7, 0.3, 0.6]])  # e.g. partial credit
    print(f"{'rewards:':16}", [round(r, 3) for r in rewards[0].tolist()])
    for name in ("median_baseline", "grpo", "ngrpo"):
        print(f"{name + ':':16}", [round(a, 3) for a in advantages.compute(name, rewards)[0].tolist()])

    # NGRPO's preset with the estimator swapped for ours: one field, plus our estimator's parameter.
    config = NGRPOConfig().training(
        advantage_estimator="median_baseline", std_normalize=False, component_kwargs={"scale": 0.5}
    )
    config.validate()
    kwargs = config.component_params("advantage_estimator")
    print(f"\nthe estimator receives {kwargs}")
    scaled = advantages.compute(config.advantage_estimator, rewards, **kwargs)
    print(f"{'median_baseline:':16}", [round(a, 3) for a in scaled[0].tolist()])
    print()
    print(format_component_table(group_size=8))


if __name__ == "__main__":
    main()
