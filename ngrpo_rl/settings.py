"""Every configuration field, declared once: default, type, help, check and, where a paper gives it,
the citation.

``SETTINGS`` is the one table. Everything else is derived from it:

- ``Settings``: a frozen dataclass of every field plus ``seed``, the plain, Ray-free object that the
  training pipeline and the learner read (``Settings()`` holds the table's defaults; constructing
  one validates it);
- ``RLVRConfig`` (``ngrpo_rl.algorithms.config``): its defaults, its builder methods' keyword
  arguments (``.training()``, ``.critic()``, ``.generation()``, ``.evaluation()``, ``.reporting()``)
  and its ``validate()``;
- the CLI's ``--set name=value`` (``parse_value`` reads a string by the field's declared type);
- ``docs/CONFIG.md`` (``python -m ngrpo_rl.settings > docs/CONFIG.md``; a test keeps it current).

Components declare the fields that feed them when they register
(``@advantages.register("ngrpo", params={"epsilon": "advantage_epsilon", ...})``); a component's own
parameter that is no field is declared with ``Param`` and set through the ``component_kwargs`` field.
``component_params(values, kind)`` gives the keyword arguments a chosen component receives.

This module imports nothing heavy: registries are looked up lazily, when a value is validated.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Union

# The bundled tiny model's name (declared here, imported by ngrpo_rl.algorithms.default_model, whose
# ``resolve_model_path`` builds it on first use).
DEFAULT_MODEL = "ngrpo_rl/tiny-arithmetic"

# The builder sections, in the order the docs list them.
SECTIONS = ("training", "critic", "learners", "generation", "evaluation", "reporting")

# Model dtypes the learner and the generation backends accept (None = the checkpoint's own).
DTYPES = (None, "float32", "float16", "bfloat16", "float64")

# The fields that select components which receive parameters from the config.
COMPONENT_KINDS = ("advantage_estimator", "policy_loss", "group_filter", "reward_shaping")


class _Required:
    """The default of a ``Param`` that has none: ``component_kwargs`` must give its value."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


# ---- checks ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Check:
    """A constraint on a value (after its type is checked): a predicate and the words for it,
    which appear in error messages and in the docs (e.g. ``"in [0, 1)"``)."""

    test: Callable[[Any], bool]
    description: str

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))


def at_least(bound: float) -> Check:
    return Check(lambda value: value >= bound, f">= {bound}")


def above(bound: float) -> Check:
    return Check(lambda value: value > bound, f"> {bound}")


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """``low <= value <= high``, either end open."""

    def test(value: Any) -> bool:
        return (low < value if low_open else low <= value) and (value < high if high_open else value <= high)

    return Check(test, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


def one_of(*choices: Any) -> Check:
    return Check(lambda value: value in choices, "one of " + ", ".join(map(repr, choices)))


def each(check: Check, *, non_empty: bool = False, distinct: bool = False) -> Check:
    """Every element of a sequence passes ``check`` (and the sequence is non-empty / has no repeats)."""

    def test(values: Any) -> bool:
        return (
            (not non_empty or len(values) > 0)
            and (not distinct or len(set(values)) == len(values))
            and all(check(value) for value in values)
        )

    words = [w for w, on in (("non-empty", non_empty), ("without repeats", distinct)) if on]
    return Check(test, ", ".join(words + [f"each {check.description}"]))


def _is_device(value: str) -> bool:
    if value in ("auto", "cpu", "cuda"):
        return True
    prefix, _, index = value.partition(":")
    return prefix == "cuda" and index.isdigit()


DEVICE = Check(_is_device, "auto, cpu, cuda or cuda:N")
RESOURCES = Check(
    lambda d: all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                  and math.isfinite(v) and v >= 0 for k, v in d.items()),
    "a dict of resource name -> finite amount >= 0",
)


# ---- declarations ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    """One config field.

    ``type`` is a typing annotation (``int``, ``float``, ``bool``, ``str``, ``dict``, ``X | None``,
    ``tuple[X, ...]``, ``tuple[X, Y]``); floats are refused when NaN or infinite, ints refuse bools.
    ``check`` constrains a value that has the right type (None passes an ``X | None`` field).
    ``registry`` names where valid values are registered, ``"module:attribute"`` or several
    alternatives, looked up only when a value is validated (a registry whose module is absent is
    skipped). ``rllib`` marks a field that RLlib's ``AlgorithmConfig`` owns (set through
    ``AlgorithmConfig.training``).
    """

    name: str
    default: Any
    type: Any
    help: str
    section: str
    check: Check | None = None
    citation: str | None = None
    registry: str | tuple[str, ...] | None = None
    rllib: bool = False


@dataclasses.dataclass(frozen=True)
class Param:
    """A component's own parameter that is no config field, declared when the component registers::

        @advantages.register("scaled", params={"scale": Param(float, 1.0, "multiplies A")})
        def scaled(rewards, *, scale): ...

    Its value comes from the ``component_kwargs`` field (``.training(component_kwargs={"scale":
    2.0})``), else ``default``; ``validate()`` checks it against ``type`` and ``check``. A Param
    without a default (``REQUIRED``) must be given.
    """

    type: Any
    default: Any = REQUIRED
    help: str = ""
    check: Check | None = None


NGRPO = "NGRPO, arXiv 2509.18851"
GRPO = "GRPO (DeepSeekMath), arXiv 2402.03300"
DAPO = "DAPO, arXiv 2503.14476"
DR_GRPO = "Dr. GRPO, arXiv 2503.20783"
PSR_NSR = "PSR-NSR / W-REINFORCE, arXiv 2506.01347"
PPO = "PPO, arXiv 1707.06347"
GAE = "GAE, arXiv 1506.02438"
TIS = "truncated importance sampling, Yao et al. 2025 (verl, OpenRLHF)"


def _section(section: str) -> Callable[..., Setting]:
    """A declaring function for one section: ``name, default, type, help, check, citation, ...``."""

    def declare(name: str, default: Any, type_: Any, help_: str, check: Check | None = None,
                citation: str | None = None, registry: Any = None, rllib: bool = False) -> Setting:
        return Setting(name, default, type_, help_, section, check, citation, registry, rllib)

    return declare


_training, _critic, _learners, _generation, _evaluation, _reporting = map(_section, SECTIONS)

SETTINGS: tuple[Setting, ...] = (
    # -- training: the group, the advantage, the loss, the optimizer ------------------------------
    _training("group_size", 8, int, "responses sampled per prompt (G)", at_least(1), GRPO),
    _training("prompts_per_step", 16, int, "prompts (groups) trained on per iteration, after filtering",
              at_least(1)),
    _training("advantage_estimator", "grpo", str,
              "registered advantage estimator: grpo, ngrpo, dr_grpo, rloo, w_reinforce, psr, nsr, "
              "gae, or your own (ngrpo_rl.advantages.register)",
              registry="ngrpo_rl.advantages:estimators"),
    _training("virtual_reward", 1.0, float,
              "NGRPO: reward of the virtual maximum-reward sample (r_max; 1.0 for 0/1 rewards)",
              citation=NGRPO),
    _training("num_virtual_samples", 1, int, "NGRPO: how many virtual samples enter the group statistics",
              at_least(0), NGRPO),
    _training("std_normalize", True, bool,
              "divide group-centred rewards by the group std (False = Dr. GRPO's r - mean(r))",
              citation=DR_GRPO),
    _training("positive_weight", 0.1, float,
              "W-REINFORCE: advantage of a correct response (lambda); an incorrect one gets -1",
              citation=PSR_NSR),
    _training("advantage_epsilon", 1e-6, float,
              "added to the group std before dividing: A = (r - mean) / (std + advantage_epsilon)",
              at_least(0), GRPO),
    _training("correct_threshold", 0.5, float,
              "a response counts as correct when its verifier score exceeds this "
              "(w_reinforce, psr, nsr)", citation=PSR_NSR),
    _training("policy_loss", "ppo_clip", str, "registered policy loss (ngrpo_rl.losses.register_policy_loss)",
              registry="ngrpo_rl.losses:policy_losses"),
    _training("epsilon_pos", 0.2, float,
              "clip range above 1 for A > 0: the objective is A * min(rho, 1 + epsilon_pos) "
              "(clip-higher; NGRPO 0.24, DAPO 0.28)", at_least(0), DAPO),
    _training("epsilon_neg", 0.2, float,
              "clip range below 1 for A < 0: the objective is A * max(rho, 1 - epsilon_neg) (NGRPO 0.16)",
              within(0, 1, high_open=True), NGRPO),
    _training("dual_clip_c", None, float | None,
              "dual clip for A < 0: the loss is at most -A * c (None = off; 3.0 is usual)",
              above(1), "Dual-clip PPO, arXiv 1912.09729"),
    _training("loss_agg_mode", "token-mean", str,
              "token-mean (DAPO, NGRPO), seq-mean-token-mean (original GRPO), seq-mean-token-sum, "
              "or seq-mean-token-sum-norm (Dr. GRPO)", citation=DAPO,
              registry="ngrpo_rl.losses:aggregations"),
    _training("group_filter", "none", str,
              "none, drop_homogeneous (DAPO dynamic sampling), drop_all_correct (the NGRPO code), "
              "drop_all_incorrect, or your own (ngrpo_rl.group_filters.register)", citation=DAPO,
              registry="ngrpo_rl.group_filters:group_filters"),
    _training("max_sampling_rounds", 4, int, "with a group filter: most generation rounds per iteration",
              at_least(1), DAPO),
    _training("kl_coef", 0.0, float,
              "weight of the KL penalty to the frozen reference policy (0 = no reference model)",
              at_least(0), GRPO),
    _training("kl_estimator", "k3", str, "k1, k2 or k3 (Schulman, 'Approximating KL Divergence', 2020)",
              registry="ngrpo_rl.losses:kl_estimators"),
    _training("kl_clamp", None, float | None,
              "clamp the per-token KL estimate to [-c, c] (None = off; verl's low_var_kl uses 10)",
              above(0)),
    _training("kl_in_reward", False, bool,
              "PPO: subtract kl_coef * KL from the token rewards instead of adding it to the loss",
              citation="InstructGPT, arXiv 2203.02155"),
    _training("entropy_coef", 0.0, float, "weight of the entropy bonus (the NGRPO code runs 0.001)",
              at_least(0), NGRPO),
    _training("reward_shaping", (), tuple[str, ...],
              "registered reward shapers applied before the advantage, in order, "
              "e.g. ('overlong_penalty',)", each(Check(bool, "non-empty"), distinct=True), DAPO,
              registry="ngrpo_rl.pipeline.shaping:reward_shapers"),
    _training("overlong_buffer", None, int | None,
              "length of the ramp of the 'overlong_penalty' shaper before max_new_tokens (None = a "
              "third of max_new_tokens, as the official DAPO run's 1024 of 3072)",
              at_least(1), DAPO),
    _training("overlong_penalty_factor", 1.0, float, "DAPO: the penalty at max_new_tokens", at_least(0),
              DAPO),
    _training("mask_truncated", False, bool,
              "drop truncated responses from the loss (DAPO's overlong filtering)", citation=DAPO),
    _training("drop_zero_advantage_samples", None, bool | None,
              "drop responses whose advantage is 0 from the batch (None = as the estimator declares: "
              "psr and nsr drop them, as the official code does)", citation=PSR_NSR),
    _training("micro_batch_size", 256, int,
              "most sequences per forward/backward pass (gradients accumulate exactly)", at_least(1)),
    _training("micro_batch_max_tokens", 16384, int | None,
              "most padded tokens (sequences x (longest prompt + longest response)) per forward/backward "
              "pass: rows are sorted by length and packed up to both limits, like verl's dynamic batch "
              "size (None = micro_batch_size alone)", at_least(1)),
    _training("weight_decay", 0.0, float, "AdamW weight decay", at_least(0), "AdamW, arXiv 1711.05101"),
    _training("betas", (0.9, 0.999), tuple[float, float], "AdamW betas (beta1, beta2)",
              each(within(0, 1, high_open=True)), "AdamW, arXiv 1711.05101"),
    _training("lr_schedule", "constant", str, "constant, linear or cosine (after warmup_steps)",
              registry=("ngrpo_rl.optim:lr_schedules", "ngrpo_rl.learner:lr_schedules")),
    _training("warmup_steps", 0, int, "optimizer steps of linear learning-rate warm-up", at_least(0)),
    _training("total_steps", 1000, int, "optimizer steps over which linear and cosine schedules decay",
              at_least(1)),
    _training("lr", 1e-6, float, "AdamW learning rate", above(0), rllib=True),
    _training("grad_clip", 1.0, float | None, "clip the global gradient norm to this (None = off)",
              above(0), rllib=True),
    _training("num_epochs", 1, int, "passes over each iteration's rollouts", at_least(1), rllib=True),
    _training("minibatch_size", None, int | None,
              "sequences per optimizer step (None = num_minibatches steps, or all of the iteration's "
              "rollouts in one step); when set it wins over num_minibatches", at_least(1),
              rllib=True),
    _training("num_minibatches", None, int | None,
              "with minibatch_size None: split each iteration's rollouts into this many mini-batches, "
              "one optimizer step each, whatever the batch size (the official scripts take 4: 1024 "
              "prompts in mini-batches of 256)", at_least(1), NGRPO),
    _training("recompute_old_logprobs", False, bool,
              "recompute the old log-probs with the learner's model before the update instead of "
              "trusting the sampler's (a fast sampler such as vLLM computes them differently)",
              citation=TIS),
    _training("tis_cap", None, float | None,
              "truncated importance sampling: weight each token's policy loss by "
              "min(pi_learner / pi_sampler, tis_cap) (None = off; needs recompute_old_logprobs; "
              "verl and OpenRLHF use 2)", above(0), TIS),
    _training("gradient_checkpointing", False, bool,
              "recompute activations in the backward pass (less memory, about a third more compute)"),
    _training("max_verifier_timeout_frac", 0.5, float,
              "an iteration in which more than this fraction of the responses to train on timed out "
              "in the verifier (scored 0 for it, not for being wrong) is flagged and not trained on",
              within(0, 1)),
    _training("max_nonfinite_steps", 3, int,
              "optimizer steps with a non-finite loss or gradient are skipped and counted; this many in "
              "a row stop training with an error (the last checkpoint stays as it was)", at_least(1)),
    _training("component_kwargs", {}, dict,
              "values of the parameters the chosen components declare of their own, beyond these "
              "fields (ngrpo_rl.settings.Param), e.g. {'alpha': 0.3}; a key no chosen component "
              "declares is refused", Check(lambda d: all(isinstance(k, str) for k in d), "with string keys")),
    # -- critic: PPO's value model ----------------------------------------------------------------
    _critic("critic_model_name_or_path", None, str | None,
            "the critic's initial model (None = the policy's model, as the official PPO script does)"),
    _critic("critic_lr", 1e-5, float, "the critic's learning rate", above(0), PPO),
    _critic("value_clip", 0.5, float | None,
            "clip the new value to old value +- value_clip in the value loss (None = off)", above(0), PPO),
    _critic("gamma", 1.0, float, "discount factor of the token rewards (RLlib's default is 0.99; ours is 1.0, as for outcome rewards)",
            within(0, 1), GAE, rllib=True),
    _critic("gae_lambda", 1.0, float, "GAE lambda (1.0 = Monte-Carlo returns for outcome rewards)",
            within(0, 1), GAE),
    _critic("whiten_advantages", False, bool, "normalise GAE advantages over the batch (mean 0, std 1)",
            citation=PPO),
    # -- learners: the learner group (RLlib's .learners()) ----------------------------------------
    _learners("num_learners", 0, int,
              "learner actors in one torch.distributed group (0 = the learner runs in the driver)",
              at_least(0), rllib=True),
    _learners("num_cpus_per_learner", 1.0, float, "CPUs each learner actor reserves", above(0), rllib=True),
    _learners("num_gpus_per_learner", 0.0, float, "GPUs each learner actor reserves (1 on a GPU node)",
              at_least(0), rllib=True),
    _learners("custom_resources_per_learner", {}, dict,
              "custom Ray resources each learner actor reserves, e.g. {'learner_node': 1} to pin the "
              "learners to the nodes that advertise it", RESOURCES, rllib=True),
    _learners("learner_strategy", "ddp", str,
              "how the learners share the model: ddp (each holds it whole, gradients all-reduced) or "
              "fsdp2 (parameters, gradients and optimizer state sharded with fully_shard)",
              one_of("ddp", "fsdp2")),
    # -- generation: the model, sampling and the workers ------------------------------------------
    _generation("model_name_or_path", DEFAULT_MODEL, str,
                f"a local Hugging Face model folder, a Hub id resolved through the local cache, or "
                f"{DEFAULT_MODEL!r} (the bundled tiny model, warm-started on first use)",
                Check(bool, "non-empty")),
    _generation("max_new_tokens", 16, int, "longest response in tokens", at_least(1)),
    _generation("temperature", 1.0, float, "sampling temperature (also divides the learner's logits)",
                above(0)),
    _generation("top_p", 1.0, float, "nucleus sampling threshold", within(0, 1, low_open=True)),
    _generation("num_generation_workers", 0, int, "Ray actors that generate (0 = generate in the driver)",
                at_least(0)),
    _generation("num_cpus_per_generation_worker", 1, float, "CPUs each generation actor reserves", above(0)),
    _generation("num_gpus_per_generation_worker", 0, float, "GPUs each generation actor reserves (may be a fraction)",
                at_least(0)),
    _generation("custom_resources_per_generation_worker", {}, dict,
                "custom Ray resources each generation actor reserves, e.g. {'rollout_node': 1}", RESOURCES),
    _generation("generation_backend", "hf", str, "registered generation backend: hf, or your own "
                "(ngrpo_rl.generation.backends)", registry="ngrpo_rl.generation:backends"),
    _generation("generation_backend_kwargs", {}, dict,
                "the backend's own constructor options, e.g. {'gpu_memory_utilization': 0.7, "
                "'tensor_parallel_size': 2} for vllm (reserve as many GPUs per generation worker)",
                Check(lambda d: all(isinstance(k, str) for k in d), "with string keys")),
    _generation("generation_sleep_between_calls", False, bool,
                "colocated placement: generation actors free their GPU memory after each call so that "
                "learners on the same GPUs can train (vllm with enable_sleep_mode; fractional "
                "num_gpus_per_generation_worker and num_gpus_per_learner)"),
    _generation("overlap_generation", False, bool,
                "generate the next batch while the learner trains on this one: one step off policy, "
                "corrected by the importance ratio against the sampler's log-probs (verl's one-step-"
                "off-policy, PipelineRL); pays off when generation has its own actor or device"),
    _generation("generation_batch_size", 512, int,
                "sequences (prompts x samples) per generate call inside a worker", at_least(1)),
    _generation("device", "auto", str, "where the learner runs: auto, cpu, cuda or cuda:N", DEVICE),
    _generation("dtype", None, str | None,
                "model dtype for learner and generation: float32, float16, bfloat16, float64 "
                "(None = the checkpoint's)", one_of(*DTYPES[1:])),
    # -- evaluation: held-out pass@k --------------------------------------------------------------
    _evaluation("evaluation_interval", 0, int, "run pass@k evaluation every this many iterations (0 = never)",
                at_least(0)),
    _evaluation("evaluation_num_problems", 100, int, "held-out problems per evaluation", at_least(1)),
    _evaluation("evaluation_samples_per_problem", 8, int, "responses per problem (n of the pass@k estimator)",
                at_least(1), "Codex, arXiv 2107.03374"),
    _evaluation("evaluation_ks", (1, 2, 4, 8), tuple[int, ...],
                "the k values reported, each <= evaluation_samples_per_problem; Pass@k AUC spans them",
                each(at_least(1), non_empty=True), NGRPO),
    _evaluation("evaluation_temperature", 0.6, float, "sampling temperature for evaluation", above(0), NGRPO),
    _evaluation("evaluation_top_p", 0.95, float, "top_p for evaluation", within(0, 1, low_open=True), NGRPO),
    # -- reporting --------------------------------------------------------------------------------
    _reporting("tensorboard", True, bool,
               "write TensorBoard events from a standalone train() (Tune writes its own)"),
    _reporting("tensorboard_dir", None, str | None, "where (None = the algorithm's log directory)"),
    _reporting("log_completions", 4, int, "example completions written to TensorBoard as text each iteration",
               at_least(0)),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
if len(SETTINGS_BY_NAME) != len(SETTINGS):  # pragma: no cover - a programming error
    raise RuntimeError("a field is declared twice in SETTINGS")

# Every field of ``Settings``: the table's and ``seed`` (RLlib's ``.debugging(seed=...)``).
FIELD_NAMES: frozenset[str] = frozenset(SETTINGS_BY_NAME) | {"seed"}


def get(name: str) -> Setting:
    """The declaration of field ``name``; an unknown name raises ``KeyError`` with close matches."""
    try:
        return SETTINGS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown config field {name!r}{_did_you_mean(name, SETTINGS_BY_NAME)}") from None


def section_settings(section: str) -> tuple[Setting, ...]:
    """The fields of one builder section, in table order."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; sections: {', '.join(SECTIONS)}")
    return tuple(s for s in SETTINGS if s.section == section)


def _did_you_mean(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(str(name), list(candidates), n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


# ---- types -------------------------------------------------------------------------------------


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    return typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else None


def type_name(tp: Any) -> str:
    """``float | None``, ``tuple[int, ...]``: a declared type as the docs show it."""
    args = _union_args(tp)
    if args is not None:
        rest = [a for a in args if a is not type(None)]
        return " | ".join([type_name(a) for a in rest] + (["None"] if len(rest) < len(args) else []))
    if typing.get_origin(tp) is tuple:
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return f"tuple[{type_name(items[0])}, ...]"
        return f"tuple[{', '.join(type_name(a) for a in items)}]"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _type_words(tp: Any) -> str:
    """The declared type in words, for error messages: 'None or a finite number', 'a sequence of
    2 finite numbers'."""
    args = _union_args(tp)
    if args is not None:
        words = [_type_words(a) for a in args if a is not type(None)]
        return ("None or " if type(None) in args else "") + " or ".join(words)
    if typing.get_origin(tp) is tuple:
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return f"a sequence of {_plural(items[0])}"
        if len(set(items)) == 1:
            return f"a sequence of {len(items)} {_plural(items[0])}"
        return "a sequence (" + ", ".join(_type_words(a) for a in items) + ")"
    return {bool: "True or False", int: "an integer", float: "a finite number", str: "a string",
            dict: "a dict"}.get(tp, f"a {type_name(tp)}")


def _plural(tp: Any) -> str:
    return {int: "integers", float: "finite numbers", str: "strings", bool: "bools"}.get(tp, type_name(tp))


def matches_type(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the declared type. An int is a float, a bool is not an int, a list
    is a tuple; NaN and infinity are refused separately (``validate_value``)."""
    if tp is Any or tp is object:
        return True
    args = _union_args(tp)
    if args is not None:
        return any(matches_type(a, value) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is dict:
        return isinstance(value, Mapping)
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return all(matches_type(items[0], v) for v in value)
        return len(value) == len(items) and all(matches_type(a, v) for a, v in zip(items, value))
    return isinstance(value, tp)


def _non_finite(value: Any) -> bool:
    """True for NaN or +-inf, alone or inside a list/tuple."""
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value)


def normalize(tp: Any, value: Any) -> Any:
    """A valid value in its canonical form: lists become tuples, as declared."""
    if isinstance(value, list) and _tuple_type(tp):
        return tuple(value)
    if isinstance(value, Mapping) and tp is dict:
        return dict(value)
    return value


def _tuple_type(tp: Any) -> bool:
    args = _union_args(tp)
    if args is not None:
        return any(_tuple_type(a) for a in args)
    return typing.get_origin(tp) is tuple


def _check_typed(label: str, tp: Any, check: Check | None, value: Any, fix: str) -> None:
    """Raises ValueError naming ``label`` unless ``value`` has type ``tp``, is finite and passes ``check``."""
    requirement = _type_words(tp)
    if check is not None:
        requirement += f" {check.description}" if tp in (int, float) else f" ({check.description})"
    if not matches_type(tp, value) or _non_finite(value):
        detail = "; NaN and infinity are refused" if _non_finite(value) else ""
        raise ValueError(f"{label} must be {requirement}, got {value!r}{detail}; {fix}")
    if check is not None and value is not None and not check(value):
        raise ValueError(f"{label} must be {requirement}, got {value!r}; {fix}")


# ---- registries (looked up lazily) ---------------------------------------------------------------


def resolve_registry(spec: str | Sequence[str] | None) -> Any:
    """The registry named by ``"module:attribute"`` (or the first of several that exists), or None
    when its module is absent. Imported only here, so validating a value may import, e.g., the
    generation backends, but importing this module imports nothing heavy."""
    if spec is None:
        return None
    for item in (spec,) if isinstance(spec, str) else spec:
        module_name, _, attribute = item.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only the registry's own module being absent is tolerated, not a broken import inside it.
            if error.name is not None and (module_name == error.name or module_name.startswith(error.name + ".")):
                continue
            raise
        registry = getattr(module, attribute, None)
        if registry is not None:
            return registry
    return None


def _check_registered(setting: Setting, value: Any) -> None:
    registry = resolve_registry(setting.registry)
    if registry is None:
        return
    names = value if isinstance(value, (tuple, list)) else (value,)
    for name in names:
        if name not in registry:
            valid = list(registry.available())
            raise ValueError(
                f"{setting.name}={value!r}: {name!r} is not a registered {registry.kind}; choose one of "
                f"{valid}{_did_you_mean(name, valid)} (or register your own)"
            )


# ---- validation --------------------------------------------------------------------------------


def _fix(setting: Setting) -> str:
    return f"set it with .{setting.section}({setting.name}=...) (default {setting.default!r})"


def validate_value(name: str, value: Any) -> None:
    """Raises ``ValueError`` naming field ``name``, the bad value and the fix, unless ``value`` has
    the declared type (NaN and infinity refused), passes the field's check and, for a registered
    component, is registered."""
    setting = get(name)
    _check_typed(name, setting.type, setting.check, value, _fix(setting))
    _check_registered(setting, value)


def _reader(values: Any) -> Callable[[str], Any]:
    if isinstance(values, Mapping):
        def read(name: str) -> Any:
            try:
                return values[name]
            except KeyError:
                raise ValueError(f"the settings lack field {name!r}") from None

        return read
    return lambda name: getattr(values, name)


def validate_settings(values: Any) -> None:
    """Validates every field of ``values`` (a ``Settings``, an ``RLVRConfig`` or a mapping of every
    field), then the checks across fields, then the parameters of the chosen components."""
    read = _reader(values)
    for setting in SETTINGS:
        validate_value(setting.name, read(setting.name))
    _check_consistency(read)
    _check_component_kwargs(read)


def _check_consistency(read: Callable[[str], Any]) -> None:
    """The checks that involve more than one field."""
    estimator = read("advantage_estimator")
    registry = resolve_registry(SETTINGS_BY_NAME["advantage_estimator"].registry)
    min_group_size = registry.metadata(estimator).get("min_group_size", 1) if registry is not None else 1
    if read("group_size") < min_group_size:
        raise ValueError(
            f"group_size must be >= {min_group_size} with advantage_estimator={estimator!r} (a group of "
            f"one has no relative advantage), got {read('group_size')}; raise group_size or use "
            f"w_reinforce, psr or nsr"
        )
    buffer, max_new_tokens = read("overlong_buffer"), read("max_new_tokens")
    if buffer is not None and buffer > max_new_tokens:
        raise ValueError(
            f"overlong_buffer must be <= max_new_tokens ({max_new_tokens}), got {buffer}; shorten the "
            f"buffer or raise max_new_tokens"
        )
    if read("tis_cap") is not None and not read("recompute_old_logprobs"):
        raise ValueError(
            "tis_cap needs recompute_old_logprobs=True: without it the learner's old log-probs are "
            "the sampler's and every importance weight is 1; set .training(recompute_old_logprobs=True) "
            "or tis_cap=None"
        )
    samples = read("evaluation_samples_per_problem")
    bad_ks = [k for k in read("evaluation_ks") if k > samples]
    if bad_ks:
        raise ValueError(
            f"evaluation_ks must each be <= evaluation_samples_per_problem ({samples}), got {bad_ks} too "
            f"large; drop them or raise evaluation_samples_per_problem"
        )


# ---- component parameters ----------------------------------------------------------------------


def component_registry(kind: str) -> Any:
    """The registry of the components that field ``kind`` selects (None if its module is absent)."""
    if kind not in COMPONENT_KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(COMPONENT_KINDS)}")
    return resolve_registry(SETTINGS_BY_NAME[kind].registry)


def chosen_components(values: Any) -> Iterator[tuple[str, str]]:
    """(kind, name) for every component the settings choose (each reward shaper separately)."""
    return _chosen(_reader(values))


def _chosen(read: Callable[[str], Any]) -> Iterator[tuple[str, str]]:
    for kind in COMPONENT_KINDS:
        chosen = read(kind)
        for name in chosen if isinstance(chosen, (tuple, list)) else (chosen,):
            yield kind, name


def component_params(values: Any, kind: str, name: str | None = None) -> dict[str, Any]:
    """The keyword arguments component ``name`` of ``kind`` receives: each declared field's value,
    and each declared ``Param``'s value from ``component_kwargs`` (else its default).

    ``kind`` is one of ``COMPONENT_KINDS``; ``name`` defaults to the chosen one (required for
    ``reward_shaping``, which chooses several).
    """
    read = _reader(values)
    if name is None:
        name = read(kind)
        if not isinstance(name, str):
            raise ValueError(f"{kind} chooses several components ({name!r}); name the one you want")
    registry = component_registry(kind)
    if registry is None:
        return {}
    given = read("component_kwargs")
    kwargs: dict[str, Any] = {}
    for keyword, source in registry.params(name).items():
        if isinstance(source, str):
            kwargs[keyword] = read(source)
        elif keyword in given:
            kwargs[keyword] = given[keyword]
        elif source.default is REQUIRED:
            raise ValueError(
                f"{registry.kind} {name!r} requires parameter {keyword!r}: set "
                f".training(component_kwargs={{{keyword!r}: ...}})"
            )
        else:
            kwargs[keyword] = source.default
    return kwargs


def _check_component_kwargs(read: Callable[[str], Any]) -> None:
    given = read("component_kwargs")
    declared: dict[str, list[str]] = {}
    fed_by_fields: dict[str, str] = {}
    for kind, name in _chosen(read):
        registry = component_registry(kind)
        if registry is None:
            continue
        for keyword, source in registry.params(name).items():
            if not isinstance(source, Param):
                fed_by_fields[keyword] = source
                continue
            owner = f"{kind} {name!r}"
            declared.setdefault(keyword, []).append(owner)
            fix = f"set it with .training(component_kwargs={{{keyword!r}: ...}})"
            if keyword in given:
                _check_typed(f"component_kwargs[{keyword!r}] (a parameter of {owner})", source.type,
                             source.check, given[keyword], fix)
            elif source.default is REQUIRED:
                raise ValueError(f"{owner} requires parameter {keyword!r}: {fix}")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        offered = ", ".join(f"{k!r} ({', '.join(owners)})" for k, owners in sorted(declared.items()))
        fields = [f"{k!r} comes from the field {fed_by_fields[k]}" for k in unknown if k in fed_by_fields]
        fields += [f"{k} is a field itself" for k in unknown if k in SETTINGS_BY_NAME and k not in fed_by_fields]
        hint = f" ({'; '.join(fields)}: set that instead)" if fields else ""
        raise ValueError(
            f"component_kwargs has {unknown}, which no chosen component declares as its own "
            f"parameter{hint}; the chosen components declare {offered or 'no parameters of their own'}. "
            f"Remove the key or choose the component that takes it"
        )


def drops_zero_advantage_samples(values: Any) -> bool:
    """Whether responses with advantage 0 leave the batch: ``drop_zero_advantage_samples``, or when
    it is None what the chosen estimator declares (``drop_zero_advantage_samples=True`` at
    registration: psr, nsr)."""
    read = _reader(values)
    explicit = read("drop_zero_advantage_samples")
    if explicit is not None:
        return bool(explicit)
    registry = component_registry("advantage_estimator")
    if registry is None:
        return False
    return bool(registry.metadata(read("advantage_estimator")).get("drop_zero_advantage_samples", False))


# ---- parsing (the CLI) -------------------------------------------------------------------------

_NONE_WORDS = ("none", "null", "~")


def parse_value(name: str, text: str) -> Any:
    """The value of field ``name`` from a command-line string, read by its declared type:
    ``5e-5`` is a float, ``[1,2]`` a tuple, ``null`` / ``None`` is None for a ``X | None`` field, a
    string field takes the text as it is. Raises ``ValueError`` naming the field."""
    setting = get(name)
    try:
        return _parse(setting.type, text.strip())
    except ValueError as error:
        raise ValueError(f"{name}: cannot read {text!r} as {type_name(setting.type)} ({error})") from None


def _parse(tp: Any, text: str) -> Any:
    args = _union_args(tp)
    if args is not None:
        if type(None) in args and text.lower() in _NONE_WORDS:
            return None
        rest = [a for a in args if a is not type(None)]
        return _parse(rest[0] if len(rest) == 1 else Any, text)
    if tp is str:
        return text
    if tp is bool:
        words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
        if text.lower() not in words:
            raise ValueError("expected true or false")
        return words[text.lower()]
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    import yaml  # only the CLI parses structured values

    try:
        loaded = yaml.safe_load(text) if text else None
    except yaml.YAMLError as error:
        raise ValueError(str(error).splitlines()[0]) from None
    if tp is dict and loaded is None:
        return {}
    return coerce(tp, loaded)


def coerce(tp: Any, value: Any) -> Any:
    """A value loaded from YAML or JSON converted to the declared type where that is unambiguous
    (a list to a tuple, the string '5e-5' to a float); anything else is returned as is, for
    validation to refuse."""
    args = _union_args(tp)
    if args is not None:
        rest = [a for a in args if a is not type(None)]
        return value if value is None or len(rest) != 1 else coerce(rest[0], value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if typing.get_origin(tp) is tuple and isinstance(value, (list, tuple)):
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(coerce(items[0], v) for v in value)
        if len(items) == len(value):
            return tuple(coerce(a, v) for a, v in zip(items, value))
        return tuple(value)
    return value


def coerce_value(name: str, value: Any) -> Any:
    """``coerce`` by the declared type of field ``name``."""
    return coerce(get(name).type, value)


# ---- Settings ----------------------------------------------------------------------------------


def _settings_post_init(self: Any) -> None:
    for f in dataclasses.fields(self):
        value = getattr(self, f.name)
        canonical = normalize(f.type, value)
        if canonical is not value:
            object.__setattr__(self, f.name, canonical)
    validate_settings(self)
    _check_typed("seed", int, at_least(0), self.seed, "set it with .debugging(seed=...)")


def _settings_component_params(self: Any, kind: str, name: str | None = None) -> dict[str, Any]:
    """The keyword arguments a chosen component receives (see ``ngrpo_rl.settings.component_params``)."""
    return component_params(self, kind, name)


def _settings_drops_zero_advantage_samples(self: Any) -> bool:
    """``drop_zero_advantage_samples`` resolved against the chosen estimator's declaration."""
    return drops_zero_advantage_samples(self)


def _field(setting: Setting) -> tuple[str, Any, Any]:
    default = setting.default
    if isinstance(default, (dict, list)):
        return setting.name, setting.type, dataclasses.field(default_factory=lambda d=default: type(d)(d))
    return setting.name, setting.type, dataclasses.field(default=default)


Settings = dataclasses.make_dataclass(
    "Settings",
    [_field(s) for s in SETTINGS] + [("seed", int, dataclasses.field(default=0))],
    namespace={
        "__doc__": (
            "Every config field (``SETTINGS``) plus ``seed``: the plain object the training pipeline "
            "and the learner read. ``Settings()`` holds the defaults; construction validates (a "
            "``ValueError`` names the field) and turns lists into tuples. Build one from an algorithm "
            "config with ``config.settings()``, change one with ``dataclasses.replace``."
        ),
        "__post_init__": _settings_post_init,
        "component_params": _settings_component_params,
        "drops_zero_advantage_samples": _settings_drops_zero_advantage_samples,
    },
    frozen=True,
    kw_only=True,
)
Settings.__module__ = __name__  # so that pickle (Ray) finds the class


# ---- docs --------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc_type(setting: Setting) -> str:
    words = type_name(setting.type)
    if setting.check is not None:
        words += f", {setting.check.description}"
    if setting.registry is not None:
        spec = setting.registry if isinstance(setting.registry, str) else setting.registry[-1]
        words += f", registered in `{spec.replace(':', '.')}`"
    return words


def markdown_table() -> str:
    """docs/CONFIG.md: every field by section, with type, default, help and citation."""
    intro = (
        (
            "Generated from `ngrpo_rl/settings.py` by `python -m ngrpo_rl.settings > docs/CONFIG.md`; "
            "a test keeps it current. Each field is declared once there; the builder methods, "
            "`validate()`, the CLI's `--set` and the learner's `Settings` all come from that table."
        ),
        (
            "Set a field through its section's builder method, e.g. "
            "`NGRPOConfig().training(epsilon_pos=0.28).generation(max_new_tokens=1024)`, or on the "
            "command line with `ngrpo-rl train --set epsilon_pos=0.28`. The defaults below are "
            "`RLVRConfig`'s (plain GRPO); each algorithm's preset overrides some of them. "
            "`validate()` refuses NaN and infinity in every number. The seed is RLlib's "
            "`.debugging(seed=...)`; the environment is RLlib's `.environment(env, env_config=...)`."
        ),
        (
            "A component's own parameters that are no field here are declared with "
            "`ngrpo_rl.settings.Param` when it registers and set through `component_kwargs`."
        ),
    )
    lines = ["# Configuration"]
    for paragraph in intro:
        lines += ["", paragraph]
    for section in SECTIONS:
        lines += [
            "",
            f"## {section}: `.{section}(...)`",
            "",
            "| field | type | default | meaning | source |",
            "|---|---|---|---|---|",
        ]
        for s in section_settings(section):
            source = s.citation or ""
            if s.rllib:
                source = "; ".join(filter(None, ["RLlib's own field", source]))
            lines.append(
                f"| `{s.name}` | {_cell(_doc_type(s))} | `{s.default!r}` | {_cell(s.help)} | {_cell(source)} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
