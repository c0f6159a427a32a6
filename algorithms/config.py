"""``RLVRConfig``: the one configuration every algorithm of ngrpo_rl shares.

Every algorithm (NGRPO, GRPO, DAPO, Dr. GRPO, PSR-NSR) is this config with other defaults, so any
ablation is one field: ``NGRPOConfig().training(advantage_estimator="grpo")`` is NGRPO without the
virtual reward; ``GRPOConfig().training(epsilon_pos=0.24, epsilon_neg=0.16)`` is GRPO with NGRPO's
asymmetric clipping. Builder methods follow RLlib (``rllib/algorithms/ppo/ppo.py``): keyword
arguments default to ``NotProvided``, each method returns ``self``.

RLlib's reserved names are not reused (``model``, ``num_workers``, ``rollouts()``): the policy is
``model_name_or_path`` and generation actors are ``num_generation_workers``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Optional, Sequence

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided

from ngrpo_rl import advantages, group_filters, losses
from ngrpo_rl.algorithms.default_model import DEFAULT_MODEL
from ngrpo_rl.generation import backends
from ngrpo_rl.learner import LearnerConfig, lr_schedules

# Estimators that normalise within a group and so need at least two responses per prompt.
GROUP_RELATIVE_ESTIMATORS = ("grpo", "ngrpo", "rloo", "dr_grpo")

# The fields each builder section accepts, with their help texts (also used by the CLI).
TRAINING_FIELDS: dict[str, str] = {
    "group_size": "responses sampled per prompt (G)",
    "prompts_per_step": "prompts (groups) trained on per iteration, after filtering",
    "advantage_estimator": "registered advantage estimator: grpo, ngrpo, dr_grpo, rloo, "
    "w_reinforce, psr, nsr, or your own (ngrpo_rl.advantages.register)",
    "virtual_reward": "NGRPO: reward of the virtual maximum-reward sample (arXiv 2509.18851)",
    "num_virtual_samples": "NGRPO: how many virtual samples enter the group statistics",
    "std_normalize": "divide group-centred rewards by the group std (False = Dr. GRPO)",
    "positive_weight": "W-REINFORCE: advantage of a correct response, lambda (arXiv 2506.01347)",
    "policy_loss": "registered policy loss (ngrpo_rl.losses)",
    "epsilon_pos": "clip range above 1 for A > 0: the objective is A * min(rho, 1 + epsilon_pos)",
    "epsilon_neg": "clip range below 1 for A < 0: the objective is A * max(rho, 1 - epsilon_neg)",
    "dual_clip_c": "dual clip for A < 0: the loss is at most -A * c (None = off)",
    "loss_agg_mode": "token-mean | seq-mean-token-mean | seq-mean-token-sum | "
    "seq-mean-token-sum-norm",
    "group_filter": "none | drop_homogeneous (DAPO) | drop_all_correct (NGRPO code) | "
    "drop_all_incorrect",
    "max_sampling_rounds": "with a group filter: most generation rounds per iteration",
    "kl_coef": "weight of the KL penalty to the frozen reference (0 = no reference model)",
    "kl_estimator": "k1 | k2 | k3",
    "entropy_coef": "weight of the entropy bonus",
    "overlong_buffer": "DAPO soft overlong penalty: length of the penalty ramp (None = off)",
    "overlong_penalty_factor": "DAPO: penalty at max_new_tokens",
    "mask_truncated": "drop truncated responses from the loss (DAPO overlong filtering)",
    "micro_batch_size": "sequences per forward/backward pass (gradients accumulate exactly)",
    "weight_decay": "AdamW weight decay",
    "lr_schedule": "constant | linear | cosine (after warmup_steps)",
    "warmup_steps": "optimizer steps of linear learning-rate warm-up",
    "total_steps": "optimizer steps over which linear/cosine schedules decay",
    "lr": "AdamW learning rate",
    "grad_clip": "clip the global gradient norm to this (None = off)",
    "num_epochs": "passes over each iteration's rollouts",
    "minibatch_size": "sequences per optimizer step (None = all of the iteration's rollouts)",
}
GENERATION_FIELDS: dict[str, str] = {
    "model_name_or_path": f"a local Hugging Face model directory, or {DEFAULT_MODEL!r} "
    "(the bundled tiny model, warm-started on first use)",
    "max_new_tokens": "longest response in tokens",
    "temperature": "sampling temperature (also divides the learner's logits)",
    "top_p": "nucleus sampling threshold",
    "num_generation_workers": "Ray actors that generate (0 = generate in the driver)",
    "num_cpus_per_generation_worker": "CPUs each generation actor reserves",
    "num_gpus_per_generation_worker": "GPUs each generation actor reserves",
    "generation_backend": "registered generation backend (ngrpo_rl.generation.backends)",
    "generation_batch_size": "sequences (prompts x samples) per generate call inside a worker",
    "device": "auto | cpu | cuda: where the learner runs",
    "dtype": "model dtype for learner and generation (None = the checkpoint's; e.g. bfloat16)",
}
EVALUATION_FIELDS: dict[str, str] = {
    "evaluation_interval": "run pass@k evaluation every this many iterations (0 = never)",
    "evaluation_num_problems": "held-out problems per evaluation",
    "evaluation_samples_per_problem": "responses per problem (n of the pass@k estimator)",
    "evaluation_ks": "the k values reported (each <= evaluation_samples_per_problem)",
    "evaluation_temperature": "sampling temperature for evaluation",
    "evaluation_top_p": "top_p for evaluation",
}
REPORTING_FIELDS: dict[str, str] = {
    "tensorboard": "write TensorBoard events from a standalone train() (Tune writes its own)",
    "tensorboard_dir": "where (None = the algorithm's log directory)",
    "log_completions": "example completions written to TensorBoard as text each iteration",
}


class RLVRConfig(AlgorithmConfig):
    """Configuration shared by all ngrpo_rl algorithms (defaults: plain GRPO)."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        super().__init__(algo_class=algo_class)
        self.env = "ngrpo_rl/Arithmetic-v0"  # the bundled task
        self.env_config = {}

        # -- training --
        self.group_size = 8  # G responses per prompt
        self.prompts_per_step = 16  # groups per iteration
        self.advantage_estimator = "grpo"  # group-normalised advantages
        self.virtual_reward = 1.0  # NGRPO's r_max for 0/1 rewards
        self.num_virtual_samples = 1  # NGRPO adds one virtual sample
        self.std_normalize = True  # False gives Dr. GRPO's r - mean(r)
        self.positive_weight = 0.1  # W-REINFORCE lambda
        self.policy_loss = "ppo_clip"  # the clipped surrogate
        self.epsilon_pos = 0.2  # symmetric PPO/GRPO clipping
        self.epsilon_neg = 0.2
        self.dual_clip_c = None  # no dual clip
        self.loss_agg_mode = "token-mean"
        self.group_filter = "none"  # keep every group
        self.max_sampling_rounds = 4  # cap on oversampling with a filter
        self.kl_coef = 0.0  # no reference model
        self.kl_estimator = "k3"
        self.entropy_coef = 0.0
        self.overlong_buffer = None  # DAPO soft overlong penalty off
        self.overlong_penalty_factor = 1.0
        self.mask_truncated = False
        self.micro_batch_size = 64
        self.weight_decay = 0.0
        self.lr_schedule = "constant"
        self.warmup_steps = 0
        self.total_steps = 1000
        self.lr = 1e-6  # a real-model default; the tiny model's main job sets its own
        self.grad_clip = 1.0
        self.num_epochs = 1  # on-policy: one pass
        self.minibatch_size = None  # one optimizer step per pass

        # -- generation --
        self.model_name_or_path = DEFAULT_MODEL
        self.max_new_tokens = 16  # enough for the arithmetic task; raise for real math
        self.temperature = 1.0
        self.top_p = 1.0
        self.num_generation_workers = 0  # generate in the driver
        self.num_cpus_per_generation_worker = 1
        self.num_gpus_per_generation_worker = 0
        self.generation_backend = "hf"
        self.generation_batch_size = 256
        self.device = "auto"
        self.dtype = None

        # -- evaluation (pass@k on held-out problems) --
        self.evaluation_interval = 0  # never during training
        self.evaluation_num_problems = 100
        self.evaluation_samples_per_problem = 8
        self.evaluation_ks = (1, 2, 4, 8)
        self.evaluation_temperature = 0.6  # the paper's evaluation sampling
        self.evaluation_top_p = 0.95

        # -- reporting --
        self.tensorboard = True
        self.tensorboard_dir = None
        self.log_completions = 4

    def build(self, *args: Any, **kwargs: Any):
        """Builds the algorithm: RLlib's ``build_algo``, under the name RLlib users know
        (RLlib 2.60 marks ``build`` deprecated; here it is simply an alias)."""
        return self.build_algo(*args, **kwargs)

    # -- builder sections ----------------------------------------------------------------------

    def training(self, **kwargs: Any) -> "RLVRConfig":
        """Training fields (see ``TRAINING_FIELDS`` for each one's meaning), plus RLlib's."""
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in TRAINING_FIELDS}
        # lr, grad_clip, num_epochs and minibatch_size are RLlib's own fields: let it set them.
        rllib_owned = {k: ours.pop(k) for k in ("lr", "grad_clip", "num_epochs", "minibatch_size")
                       if k in ours}
        super().training(**rllib_owned, **kwargs)
        return self._set(ours)

    def generation(self, **kwargs: Any) -> "RLVRConfig":
        """Generation fields (``GENERATION_FIELDS``): the model, sampling and the workers."""
        return self._set(self._only(kwargs, GENERATION_FIELDS, "generation"))

    def evaluation(self, **kwargs: Any) -> "RLVRConfig":
        """Held-out pass@k evaluation (``EVALUATION_FIELDS``); other keys go to RLlib, whose
        ``update_from_dict`` routes every ``evaluation_*`` key through this method."""
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in EVALUATION_FIELDS}
        super().evaluation(**kwargs)
        return self._set(ours)

    def reporting(self, **kwargs: Any) -> "RLVRConfig":
        """TensorBoard output (``REPORTING_FIELDS``), plus RLlib's reporting fields."""
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in REPORTING_FIELDS}
        super().reporting(**kwargs)
        return self._set(ours)

    def _only(self, kwargs: dict, allowed: dict, section: str) -> dict:
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(
                f".{section}() got unknown field(s) {unknown}; valid fields: {sorted(allowed)}"
            )
        return kwargs

    def _set(self, values: dict) -> "RLVRConfig":
        for key, value in values.items():
            if value is not NotProvided:
                setattr(self, key, value)
        return self

    # -- validation ----------------------------------------------------------------------------

    def validate(self) -> None:
        """Refuses bad values with a message naming the field and the fix.

        RLlib's own checks concern EnvRunners, RLModules and Learners, which these algorithms do
        not use, so they are not run.
        """
        if not self._validate_config:
            return
        _check_registered("advantage_estimator", self.advantage_estimator, advantages.available())
        _check_registered("group_filter", self.group_filter, group_filters.available())
        _check_registered("policy_loss", self.policy_loss, losses.available_policy_losses())
        _check_registered("loss_agg_mode", self.loss_agg_mode, losses.aggregations.available())
        _check_registered("kl_estimator", self.kl_estimator, losses.kl_estimators.available())
        _check_registered("lr_schedule", self.lr_schedule, lr_schedules.available())
        _check_registered("generation_backend", self.generation_backend, backends.available())
        for name in ("epsilon_pos", "epsilon_neg", "kl_coef", "entropy_coef", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.epsilon_neg >= 1:
            raise ValueError(
                f"epsilon_neg must be < 1 (the lower clip bound 1 - epsilon_neg must stay "
                f"positive), got {self.epsilon_neg}"
            )
        if self.dual_clip_c is not None and self.dual_clip_c <= 1:
            raise ValueError(f"dual_clip_c must be > 1 or None, got {self.dual_clip_c}")
        _check_int("group_size", self.group_size, 1)
        if self.group_size < 2 and self.advantage_estimator in GROUP_RELATIVE_ESTIMATORS:
            raise ValueError(
                f"group_size must be >= 2 with advantage_estimator={self.advantage_estimator!r} "
                f"(a group of one has no relative advantage); raise group_size or use "
                f"w_reinforce, psr or nsr"
            )
        for name, minimum in (
            ("prompts_per_step", 1), ("max_sampling_rounds", 1), ("micro_batch_size", 1),
            ("max_new_tokens", 1), ("num_generation_workers", 0), ("generation_batch_size", 1),
            ("warmup_steps", 0), ("total_steps", 1), ("num_epochs", 1),
            ("evaluation_interval", 0), ("evaluation_num_problems", 1),
            ("evaluation_samples_per_problem", 1), ("log_completions", 0),
        ):
            _check_int(name, getattr(self, name), minimum)
        if self.minibatch_size is not None:
            _check_int("minibatch_size", self.minibatch_size, 1)
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 0 < self.temperature:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("top_p", "evaluation_top_p"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.overlong_buffer is not None and not 1 <= self.overlong_buffer <= self.max_new_tokens:
            raise ValueError(
                f"overlong_buffer must be between 1 and max_new_tokens ({self.max_new_tokens}) "
                f"or None, got {self.overlong_buffer}"
            )
        bad_ks = [k for k in self.evaluation_ks if not 1 <= k <= self.evaluation_samples_per_problem]
        if not self.evaluation_ks or bad_ks:
            raise ValueError(
                f"evaluation_ks must be non-empty with 1 <= k <= evaluation_samples_per_problem "
                f"({self.evaluation_samples_per_problem}); bad values: {bad_ks}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if not isinstance(self.env, str):
            raise ValueError(
                f"env must be a registered gymnasium id such as 'ngrpo_rl/Arithmetic-v0' or "
                f"'ngrpo_rl/Math-v0', got {self.env!r}"
            )

    # -- derived values ------------------------------------------------------------------------

    def advantage_params(self) -> dict[str, Any]:
        """The config fields the chosen advantage estimator accepts."""
        candidates = {
            "virtual_reward": self.virtual_reward,
            "num_virtual_samples": self.num_virtual_samples,
            "std_normalize": self.std_normalize,
            "positive_weight": self.positive_weight,
        }
        return advantages.bind_params(self.advantage_estimator, candidates)

    def policy_loss_params(self) -> dict[str, Any]:
        """The config fields the chosen policy loss accepts."""
        candidates = {
            "epsilon_pos": self.epsilon_pos,
            "epsilon_neg": self.epsilon_neg,
            "dual_clip_c": self.dual_clip_c,
        }
        return losses.bind_policy_loss_params(self.policy_loss, candidates)

    def learner_config(self, model_path: str, device: str) -> LearnerConfig:
        """The learner's settings: every ``LearnerConfig`` field this config has, by name."""
        shared = {f.name: vars(self)[f.name] for f in fields(LearnerConfig) if f.name in vars(self)}
        shared.update(
            model_name_or_path=model_path,
            policy_loss_params=self.policy_loss_params(),
            seed=self.seed or 0,
            device=device,
        )
        return LearnerConfig(**shared)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _check_registered(field: str, value: Any, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"{field}={value!r} is not registered; choose one of {list(valid)}")


def _check_int(field: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")
