"""The experimental setup every algorithm shares in the NGRPO paper's official scripts.

nangongrui-ngr/NGRPO at e7a3804, ``train_scripts/train_qwen2.5-math-7b_{ngrpo,grpo,dapo,psr_nsr,ppo}.sh``
with the defaults of ``verl/trainer/config/ppo_trainer.yaml`` and ``verl/workers/fsdp_workers.py``:

- 1024 prompts x 8 responses per rollout batch (``data.train_batch_size=1024``: ngrpo.sh l. 34,
  grpo.sh l. 20; ``rollout.n=8``: ngrpo.sh l. 12 and 57, grpo.sh l. 46) trained in mini-batches of
  256 prompts (``actor.ppo_mini_batch_size=256``: ngrpo.sh l. 47, grpo.sh l. 35), one epoch
  (``ppo_epochs: 1``, yaml l. 42): 4 optimizer steps per batch, so from the second
  step on the ratio differs from 1 and the clip binds. Here ``num_minibatches = 4`` splits every
  iteration's batch in four whatever ``prompts_per_step`` and ``group_size`` are (setting
  ``minibatch_size`` instead fixes the sequences per step).
- ``optim.lr=1e-6`` constant (ngrpo.sh l. 23, grpo.sh l. 15; ``warmup_style: constant``, yaml
  l. 49), AdamW
  with weight decay 0.01 (``fsdp_workers.py`` l. 278), gradient clipping 1.0 (yaml l. 33).
- ``entropy_coeff: 0.001`` for every algorithm (yaml l. 37), token-mean loss (verl's
  ``masked_mean`` over the mini-batch, ``verl/trainer/ppo/core_algos.py`` l. 414).
- Rollouts at temperature 1.0 and top_p 1.0 (yaml l. 72-74).
"""

from __future__ import annotations

from typing import Any

OFFICIAL_SETUP: dict[str, Any] = {
    "lr": 1e-6,
    "lr_schedule": "constant",
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "entropy_coef": 0.001,
    "loss_agg_mode": "token-mean",
    "num_epochs": 1,
    "num_minibatches": 4,  # 1024 / 256 prompts
    "minibatch_size": None,
    "temperature": 1.0,
    "top_p": 1.0,
}


def apply_official_setup(config: Any) -> None:
    """Sets ``config``'s fields to the shared setup."""
    for name, value in OFFICIAL_SETUP.items():
        setattr(config, name, value)
