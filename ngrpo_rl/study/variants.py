"""The variants a comparison study trains: an algorithm preset plus config overrides.

Each variant is one preset of ``ngrpo_rl.algorithms.ALGORITHMS`` as it stands, or with one change
(a change may span fields that only mean something together, such as the two ends of the clip
range). The NGRPO paper's ablations (Table 2) are GRPO with one of NGRPO's two changes:

- ``grpo+asym_clip``: GRPO with NGRPO's asymmetric clip, epsilon_pos = 0.24 / epsilon_neg = 0.16
  (``clip_ratio_high`` / ``clip_ratio_low``, nangongrui-ngr/NGRPO at e7a3804,
  ``train_scripts/train_qwen2.5-math-7b_ngrpo.sh`` l. 16-17);
- ``grpo+virtual_reward``: GRPO with NGRPO's advantage, the virtual maximum-reward sample in the
  group statistics (``adv_estimator=ngrpo`` with ``max_reward=1.0``, ``add_max_reward_num=1``,
  same script l. 10-11 and 27-29; ``virtual_reward`` and ``num_virtual_samples`` already default to
  those values, so the change is the one field ``advantage_estimator``).

Full NGRPO differs from GRPO in both and also drops all-correct groups and has no KL term (its
preset's docstring cites the lines); ``ngrpo_rl.study.report`` lists each variant's differences
from the baseline as computed from the configs, not as described here.

Add a variant with ``register(Variant(...))``; a name can be registered once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ngrpo_rl.registry import Registry
from ngrpo_rl.study.jobs import build_config


@dataclass(frozen=True)
class Variant:
    """A named training recipe: ``algorithm``'s preset with ``overrides`` on top of the shared job.

    Attributes:
        name: the label in tables, figures and file names.
        algorithm: a name in ``ngrpo_rl.algorithms.ALGORITHMS``.
        overrides: config fields set after the shared job (they win over it).
        description: one line for the report.
    """

    name: str
    algorithm: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def config(self, job: Mapping[str, Any], params: Mapping[str, Any] | None = None):
        """The validated algorithm config: the preset, then ``job``, then the overrides, then
        ``params`` (the fields a sweep varies)."""
        return build_config(self.algorithm, {**job, **self.overrides, **(params or {})})


variants: Registry[Variant] = Registry("study variant")


def register(variant: Variant) -> Variant:
    """Adds ``variant`` under its name (a taken name raises ``ValueError``)."""
    return variants.register(variant.name)(variant)


def get(name: str) -> Variant:
    """The variant registered as ``name``; an unknown name lists the registered ones."""
    return variants.get(name)


register(Variant("ngrpo", "ngrpo", description="NGRPO: virtual max-reward sample + asymmetric clip 0.24 / 0.16"))
register(Variant("grpo", "grpo", description="GRPO: group-normalised advantage, clip 0.2 / 0.2, k3 KL 0.001"))
register(Variant("dapo", "dapo", description="DAPO: clip-higher 0.28 / 0.2, drops homogeneous groups, overlong penalty"))
register(Variant("dr_grpo", "dr_grpo", description="Dr. GRPO: r - mean(r), no std, seq-mean-token-sum-norm"))
register(Variant("psr_nsr", "psr_nsr", description="PSR-NSR (W-REINFORCE): +0.1 for correct, -1 for incorrect"))
register(Variant("ppo", "ppo", description="PPO: GAE from a separate critic, k1 KL in the reward"))
register(Variant(
    "grpo+asym_clip", "grpo", {"epsilon_pos": 0.24, "epsilon_neg": 0.16},
    "ablation: GRPO with NGRPO's asymmetric clip only",
))
register(Variant(
    "grpo+virtual_reward", "grpo", {"advantage_estimator": "ngrpo"},
    "ablation: GRPO with NGRPO's virtual max-reward sample only",
))

# The comparison study of the issue: the baselines, NGRPO and the two Table 2 ablations.
STUDY_VARIANTS: tuple[str, ...] = (
    "grpo", "dapo", "psr_nsr", "ppo", "ngrpo", "grpo+asym_clip", "grpo+virtual_reward",
)


def config_differences(a, b) -> dict[str, tuple[Any, Any]]:
    """Field -> (value in ``a``, value in ``b``) for every config field of ``ngrpo_rl.settings``
    (and ``seed``) on which two configs differ."""
    from ngrpo_rl.settings import SETTINGS

    names = [s.name for s in SETTINGS] + ["seed"]
    return {n: (getattr(a, n), getattr(b, n)) for n in names if getattr(a, n) != getattr(b, n)}
