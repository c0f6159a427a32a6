"""``RLVRConfig``: the one configuration every algorithm of ngrpo_rl shares.

Every algorithm (NGRPO, GRPO, DAPO, Dr. GRPO, PSR-NSR) is this config with other defaults, so any
ablation is one field: ``NGRPOConfig().training(advantage_estimator="grpo")`` is NGRPO without the
virtual reward; ``GRPOConfig().training(epsilon_pos=0.24, epsilon_neg=0.16)`` is GRPO with NGRPO's
asymmetric clipping. Builder methods follow RLlib (``rllib/algorithms/ppo/ppo.py``): keyword
arguments default to ``NotProvided``, each method returns ``self``.

The fields, their defaults, types, help and checks are declared once, in ``ngrpo_rl.settings``
(``SETTINGS``; docs/CONFIG.md lists them): ``__init__`` takes the defaults from there, the builder
methods' signatures are generated from there and ``validate()`` runs its checks. ``settings()``
gives the plain ``Settings`` object the training pipeline and the learner read.

RLlib's reserved names are not reused (``model``, ``num_workers``, ``rollouts()``): the policy is
``model_name_or_path`` and generation actors are ``num_generation_workers``.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided

from ngrpo_rl.settings import (
    SETTINGS,
    SETTINGS_BY_NAME,
    Settings,
    component_params,
    normalize,
    section_settings,
    validate_settings,
)

# RLlib's reserved names, refused with the field to use instead.
RESERVED_NAMES = {
    "num_workers": "num_generation_workers",
    "num_rollout_workers": "num_generation_workers",
    "num_env_runners": "num_generation_workers",
    "model": "model_name_or_path",
}


def _is_search_space(value: Any) -> bool:
    """A Ray Tune search space (``tune.grid_search`` gives ``{"grid_search": [...]}``, samplers are
    ``Domain`` objects): kept as it is, Tune resolves it before ``validate()`` runs."""
    if isinstance(value, dict) and "grid_search" in value:
        return True
    return type(value).__module__.startswith("ray.tune")


def _builder(section: str, rllib_method: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """The builder method of one section: its fields as typed keyword arguments (``NotProvided``
    default), generated from ``SETTINGS``. Keywords of ``rllib_method`` (RLlib's method of the same
    name) that are not our fields pass through to it, and so do our fields that RLlib owns (``lr``,
    ``grad_clip``, ``num_epochs``, ``minibatch_size``: through ``AlgorithmConfig.training``; ``num_learners``
    and the learners' resources: through ``AlgorithmConfig.learners``)."""
    ours = section_settings(section)
    names = {s.name for s in ours}
    rllib_owned = {s.name for s in ours if s.rllib}
    rllib_keywords: set[str] = set()
    if rllib_method is not None:
        rllib_keywords = {
            p.name for p in inspect.signature(rllib_method).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
    passthrough = rllib_keywords - names

    def builder(self: RLVRConfig, **kwargs: Any) -> RLVRConfig:
        unknown = sorted(set(kwargs) - names - passthrough)
        if unknown:
            raise TypeError(_unknown_message(section, unknown, names, bool(passthrough)))
        to_rllib = {k: v for k, v in kwargs.items() if k in passthrough}
        owned = {k: v for k, v in kwargs.items() if k in rllib_owned}
        # RLlib's fields go through RLlib's method of this section when it has them
        # (.learners(num_learners=...)), else through AlgorithmConfig.training (gamma).
        here = {k: v for k, v in owned.items() if k in rllib_keywords}
        if rllib_method is not None:
            rllib_method(self, **to_rllib, **here)
        if set(owned) - set(here):
            AlgorithmConfig.training(self, **{k: v for k, v in owned.items() if k not in here})
        for key, value in kwargs.items():
            if key in names and key not in rllib_owned and value is not NotProvided:
                setting = SETTINGS_BY_NAME[key]
                setattr(self, key, value if _is_search_space(value) else normalize(setting.type, value))
        return self

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [
        inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=NotProvided, annotation=s.type)
        for s in ours
    ]
    if passthrough:
        parameters.append(inspect.Parameter("rllib_kwargs", inspect.Parameter.VAR_KEYWORD))
    builder.__signature__ = inspect.Signature(parameters, return_annotation="RLVRConfig")  # type: ignore[attr-defined]
    builder.__name__ = builder.__qualname__ = section
    args = "\n".join(
        f"    {s.name} (default {s.default!r}): {s.help}" for s in ours
    )
    rllib_note = (
        f"\n    **rllib_kwargs: RLlib's own ``AlgorithmConfig.{section}`` keywords.\n" if passthrough else "\n"
    )
    builder.__doc__ = (
        f"Sets the {section} fields (declared in ``ngrpo_rl.settings.SETTINGS``; see docs/CONFIG.md). "
        f"Returns self.\n\nArgs:\n{args}{rllib_note}"
    )
    return builder


def _unknown_message(section: str, unknown: list[str], names: set[str], rllib: bool) -> str:
    hints = []
    for key in unknown:
        if key in RESERVED_NAMES:
            hints.append(f"{key} is RLlib's reserved name: use {RESERVED_NAMES[key]}")
        elif key in SETTINGS_BY_NAME:
            hints.append(f"{key} belongs to .{SETTINGS_BY_NAME[key].section}()")
        else:
            close = difflib.get_close_matches(key, list(SETTINGS_BY_NAME), n=3)
            if close:
                hints.append(f"{key}: did you mean {', '.join(close)}?")
    also = f" (and RLlib's own AlgorithmConfig.{section} keywords)" if rllib else ""
    hint = f" ({'; '.join(hints)})" if hints else ""
    return (
        f".{section}() got unknown keyword(s) {unknown}{hint}; its fields are "
        f"{', '.join(sorted(names))}{also}"
    )


class RLVRConfig(AlgorithmConfig):
    """Configuration shared by all ngrpo_rl algorithms (defaults: plain GRPO; see docs/CONFIG.md)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        self.env = "ngrpo_rl/Arithmetic-v0"  # the bundled task
        self.env_config = {}
        # Every field's default, from the one table (RLlib's gamma included: ours is 1.0).
        for setting in SETTINGS:
            setattr(self, setting.name, copy.deepcopy(setting.default))

    def build(self, *args: Any, **kwargs: Any):
        """Builds the algorithm: RLlib's ``build_algo``, under the name RLlib users know
        (RLlib 2.60 marks ``build`` deprecated; here it is simply an alias)."""
        return self.build_algo(*args, **kwargs)

    # -- builder sections (signatures generated from ngrpo_rl.settings.SETTINGS) ----------------

    training = _builder("training", AlgorithmConfig.training)
    critic = _builder("critic")
    learners = _builder("learners", AlgorithmConfig.learners)
    generation = _builder("generation")
    # RLlib's update_from_dict routes every evaluation_* key through evaluation(), ours and RLlib's.
    evaluation = _builder("evaluation", AlgorithmConfig.evaluation)
    reporting = _builder("reporting", AlgorithmConfig.reporting)

    # -- validation ----------------------------------------------------------------------------

    def validate(self) -> None:
        """Refuses bad values with a message naming the field and the fix: every field's declared
        type and check (NaN and infinity refused, registered names looked up), the checks across
        fields, and the parameters of the chosen components (``component_kwargs``).

        RLlib's own checks concern EnvRunners, RLModules and Learners, which these algorithms do
        not use, so they are not run.
        """
        if not self._validate_config:
            return
        if not isinstance(self.env, str):
            raise ValueError(  # noqa: TRY004 (validate() raises ValueError for every bad value)
                f"env must be a registered gymnasium id such as 'ngrpo_rl/Arithmetic-v0' or "
                f"'ngrpo_rl/Math-v0', got {self.env!r}"
            )
        if not isinstance(self.env_config, dict):
            raise ValueError(f"env_config must be a dict, got {self.env_config!r}")  # noqa: TRY004
        for setting in SETTINGS:
            if _is_search_space(getattr(self, setting.name)):
                raise ValueError(
                    f"{setting.name} holds an unresolved Ray Tune search space "
                    f"({getattr(self, setting.name)!r}); pass the config to "
                    f"tune.Tuner(..., param_space=config), which resolves it, or set a value"
                )
        validate_settings(self)

    # -- derived values ------------------------------------------------------------------------

    def settings(self) -> Settings:
        """The plain, Ray-free ``Settings`` of this config (validated), ``seed`` = ``self.seed or 0``."""
        return Settings(**{s.name: getattr(self, s.name) for s in SETTINGS}, seed=self.seed or 0)

    def component_params(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The keyword arguments the chosen component of ``kind`` (``advantage_estimator``,
        ``policy_loss``, ``group_filter``, ``reward_shaping``; ``name`` for another one, required for
        reward shapers) receives, from its declared parameters: config fields, and its own
        parameters from ``component_kwargs``."""
        return component_params(self, kind, name)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
