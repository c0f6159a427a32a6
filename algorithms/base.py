"""``RLVRAlgorithm``: the training loop every ngrpo_rl algorithm runs (DESIGN.md section 4).

An RLlib ``Algorithm`` in name and contract (``train()``, ``save_to_path``, ``from_checkpoint``,
Tune), but not built on RLlib's EnvRunners, RLModules or Learners, which copy the model into the
driver and cannot hold bf16 state: ``setup`` builds our own generation workers and torch learner.
The algorithms differ only in their config defaults.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Collection, Optional, Union

import gymnasium
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils import force_list
from ray.rllib.utils.checkpoints import Checkpointable
from ray.tune.execution.placement_groups import PlacementGroupFactory

import ngrpo_rl.envs  # noqa: F401  (registers the gymnasium ids)
from ngrpo_rl import advantages, group_filters
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.data import ProblemStream
from ngrpo_rl.algorithms.default_model import resolve_model_path
from ngrpo_rl.envs.problems import Problem
from ngrpo_rl.evaluation import PassAtKResult, evaluate_pass_at_k
from ngrpo_rl.generation import SamplingParams, derive_seed
from ngrpo_rl.generation.workers import GenerationPool
from ngrpo_rl.learner import Learner
from ngrpo_rl.reward_shaping import overlong_penalty
from ngrpo_rl.rollouts import Rollouts

logger = logging.getLogger(__name__)


class RLVRAlgorithm(Algorithm):
    """Group-based policy optimisation with verifiable rewards; subclasses are presets."""

    config: RLVRConfig

    @classmethod
    def get_default_config(cls) -> RLVRConfig:
        return RLVRConfig(algo_class=cls)

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, config: RLVRConfig) -> None:
        # Not super().setup(): that builds EnvRunners, RLModules and a LearnerGroup we replace.
        self._set_up_metrics()
        self.callbacks = [cls() for cls in force_list(self.config.callbacks_class)]
        cfg = self.config
        device = cfg.resolved_device()
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        self.model_path = resolve_model_path(cfg.model_name_or_path)

        self.learner = Learner(cfg.learner_config(self.model_path, device))
        self.tokenizer = self.learner.tokenizer
        # The env owns the dataset, the prompt template and the verifier; the tokenizer lets a
        # chat template render prompts the way the policy expects.
        self.env = self._make_env(cfg.env_config)
        self.train_problems = ProblemStream(self.env.unwrapped.problems, seed=cfg.seed or 0)
        self.generation = GenerationPool(
            cfg.generation_backend,
            self.model_path,
            num_workers=cfg.num_generation_workers,
            num_cpus_per_worker=cfg.num_cpus_per_generation_worker,
            num_gpus_per_worker=cfg.num_gpus_per_generation_worker,
            backend_kwargs={
                "device": device if cfg.num_generation_workers == 0 else _worker_device(cfg),
                "dtype": cfg.dtype,
                "seed": cfg.seed or 0,
                "batch_size": cfg.generation_batch_size,
            },
        )
        self._carry_over: Optional[Rollouts] = None
        self.last_rollouts: Optional[Rollouts] = None
        self._held_out_env: Optional[gymnasium.Env] = None
        self._tensorboard = self._open_tensorboard()

    def _make_env(self, env_config: dict) -> gymnasium.Env:
        return gymnasium.make(self.config.env, tokenizer=self.tokenizer, **dict(env_config))

    def _open_tensorboard(self):
        """A standalone run writes its own events; under Tune, Tune's logger writes them."""
        cfg = self.config
        under_tune = getattr(self, "_storage", None) is not None
        if not cfg.tensorboard or (under_tune and cfg.tensorboard_dir is None):
            return None
        from tensorboardX import SummaryWriter

        logdir = cfg.tensorboard_dir or self.logdir
        print(f"TensorBoard: tensorboard --logdir {logdir}")
        return SummaryWriter(logdir)

    # -- one iteration -------------------------------------------------------------------------

    def step(self) -> dict:
        """One ``train()`` iteration: the training step, then pass@k evaluation when due."""
        results = self.training_step()
        interval = self.config.evaluation_interval
        if interval and (self.iteration + 1) % interval == 0:
            started = time.perf_counter()
            results.update(self.evaluate_pass_at_k().as_metrics())
            results["timers/evaluate"] = time.perf_counter() - started
        self._write_tensorboard(results)
        return _nest(results)

    def training_step(self) -> dict[str, float]:
        """DESIGN.md section 4, steps 1 to 6; returns the flat metrics of step 7."""
        metrics: dict[str, float] = {}
        # 1-4a. Draw prompts, generate G responses each, score them, apply the group filter
        #       (oversampling until prompts_per_step groups are kept).
        rollouts = self._collect_rollouts(metrics)
        if rollouts.num_groups == 0:
            logger.warning("no group survived the group filter this iteration; skipping the update")
            return metrics
        # 4b. Advantages, one uniform call for every estimator.
        rollouts.advantages = self._compute_advantages(rollouts, metrics)
        # 5. Epochs of mini-batch updates.
        metrics.update(self.learner.update(rollouts))
        # 6. New weights to the generation workers.
        started = time.perf_counter()
        self.generation.sync_weights(self.learner.state_dict_for_generation())
        metrics["timers/sync"] = time.perf_counter() - started
        metrics["generation/worker_restarts"] = float(self.generation.num_restarts)
        self._log_completions(rollouts)
        self.last_rollouts = rollouts  # what the update saw, for inspection and debugging
        return metrics

    def _collect_rollouts(self, metrics: dict[str, float]) -> Rollouts:
        cfg = self.config
        kept = [self._carry_over] if self._carry_over is not None else []
        sampled: list[Rollouts] = []
        rounds = 0
        while sum(r.num_groups for r in kept) < cfg.prompts_per_step:
            if rounds == cfg.max_sampling_rounds:
                logger.warning(
                    "group_filter=%r kept %d of %d groups after max_sampling_rounds=%d; training "
                    "on fewer groups this iteration (raise max_sampling_rounds or prompts_per_step)",
                    cfg.group_filter, sum(r.num_groups for r in kept), cfg.prompts_per_step, rounds,
                )
                break
            batch = self._generate_and_score(self.train_problems.take(cfg.prompts_per_step), metrics)
            sampled.append(batch)
            # Filters see the verifier's scores, not the shaped rewards: DAPO's dynamic sampling
            # keeps groups by accuracy, so an overlong penalty must not make a group "mixed".
            scores = batch.grouped(batch.correct.float())
            keep = group_filters.apply(cfg.group_filter, scores, batch.grouped(batch.correct))
            kept.append(batch.select_groups(keep))
            rounds += 1

        every = Rollouts.concat(sampled)
        metrics.update(group_filters.group_stats(every.grouped(every.rewards), every.grouped(every.correct)))
        lengths = every.response_lengths()
        generate_seconds = max(metrics["timers/generate"], 1e-9)
        metrics.update(
            {
                "reward/sampled_accuracy": float(every.correct.float().mean()),
                "response/length_mean": float(lengths.mean()),
                "response/length_max": float(lengths.max()),
                "response/truncation_rate": float(torch.tensor(every.truncated).float().mean()),
                "throughput/tokens_per_s": float(lengths.sum()) / generate_seconds,
                "throughput/samples_per_s": len(every) / generate_seconds,
                "groups/sampled": float(every.num_groups),
                "groups/sampling_rounds": float(rounds),
            }
        )
        reasons = Counter(every.reasons)
        metrics["verifier/no_answer_frac"] = reasons["no_answer"] / len(every)
        metrics["verifier/timeouts"] = float(reasons["timeout"])

        rollouts = Rollouts.concat(kept) if kept else every.select_groups(torch.zeros(0))
        rollouts, surplus = rollouts.split_groups(min(rollouts.num_groups, cfg.prompts_per_step))
        self._carry_over = surplus if surplus.num_groups else None
        metrics["groups/kept"] = float(rollouts.num_groups)
        metrics["groups/carried_over"] = float(surplus.num_groups)
        if len(rollouts):
            metrics["reward/mean"] = float(rollouts.rewards.mean())
            metrics["reward/accuracy"] = float(rollouts.correct.float().mean())
        return rollouts

    def _generate_and_score(self, problems: list[Problem], metrics: dict[str, float]) -> Rollouts:
        cfg = self.config
        env = self.env.unwrapped
        prompts = [env.prompt(p) for p in problems]
        params = SamplingParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            n=cfg.group_size,
            seed=derive_seed(derive_seed(cfg.seed or 0, self.iteration), self.train_problems.index),
        )
        started = time.perf_counter()
        output = self.generation.generate(prompts, params)
        _accumulate(metrics, "timers/generate", time.perf_counter() - started)

        started = time.perf_counter()
        repeated = [p for p in problems for _ in range(cfg.group_size)]
        golds = [p.answer for p in repeated]
        verdicts = env.score_batch(repeated, output.texts)
        _accumulate(metrics, "timers/score", time.perf_counter() - started)

        correct = torch.tensor([v.correct for v in verdicts], dtype=torch.bool)
        rewards = correct.to(torch.float32)
        if cfg.overlong_buffer is not None:
            lengths = torch.tensor([len(r) for r in output.response_token_ids], dtype=torch.float32)
            rewards = rewards + overlong_penalty(
                lengths,
                max_new_tokens=cfg.max_new_tokens,
                overlong_buffer=cfg.overlong_buffer,
                penalty_factor=cfg.overlong_penalty_factor,
            )
        return Rollouts(
            problem_ids=[p.id for p in repeated],
            golds=golds,
            prompt_token_ids=output.prompt_token_ids,
            response_token_ids=output.response_token_ids,
            old_logprobs=output.response_logprobs,
            texts=output.texts,
            truncated=output.truncated,
            correct=correct,
            rewards=rewards,
            reasons=[v.reason for v in verdicts],
            group_size=cfg.group_size,
        )

    def _compute_advantages(self, rollouts: Rollouts, metrics: dict[str, float]) -> torch.Tensor:
        cfg = self.config
        grouped = advantages.compute(
            cfg.advantage_estimator, rollouts.grouped(rollouts.rewards), **cfg.advantage_params()
        )
        stats = group_filters.group_stats(
            rollouts.grouped(rollouts.rewards), rollouts.grouped(rollouts.correct), grouped
        )
        metrics.update({k: v for k, v in stats.items() if k.startswith("advantages/")})
        return grouped.flatten()

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate_pass_at_k(self, problems: Optional[list[Problem]] = None) -> PassAtKResult:
        """pass@k of the current policy on held-out problems (the env's test split by default),
        broken down by difficulty level where the problems have one."""
        cfg = self.config
        if problems is None:
            problems = self.held_out_problems()
        env = self.held_out_env.unwrapped
        prompts = [env.prompt(p) for p in problems]
        repeated = [p for p in problems for _ in range(cfg.evaluation_samples_per_problem)]
        params = SamplingParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.evaluation_temperature,
            top_p=cfg.evaluation_top_p,
            seed=derive_seed(derive_seed(cfg.seed or 0, self.iteration), -1),  # -1: never a data index
        )
        return evaluate_pass_at_k(
            self.generation.generate,
            lambda texts, _golds: [float(v.correct) for v in env.score_batch(repeated, texts)],
            prompts,
            [p.answer for p in problems],
            samples_per_problem=cfg.evaluation_samples_per_problem,
            ks=cfg.evaluation_ks,
            params=params,
            groups=[p.level if p.level is not None else "all" for p in problems],
        )

    @property
    def held_out_env(self) -> gymnasium.Env:
        """The env on the held-out split (``split="test"`` in its config), made on first use."""
        if self._held_out_env is None:
            self._held_out_env = self._make_env({**dict(self.config.env_config), "split": "test"})
        return self._held_out_env

    def held_out_problems(self) -> list[Problem]:
        """The first ``evaluation_num_problems`` problems of the env's held-out split."""
        return list(self.held_out_env.unwrapped.problems[: self.config.evaluation_num_problems])

    # -- reporting -----------------------------------------------------------------------------

    def _write_tensorboard(self, results: dict[str, float]) -> None:
        if self._tensorboard is None:
            return
        step = self.iteration + 1
        for key, value in results.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._tensorboard.add_scalar(key, value, step)
        self._tensorboard.flush()

    def _log_completions(self, rollouts: Rollouts) -> None:
        if self._tensorboard is None or not self.config.log_completions:
            return
        rows = ["| problem | gold | completion | reward | advantage |", "|---|---|---|---|---|"]
        for i in range(min(self.config.log_completions, len(rollouts))):
            text = rollouts.texts[i].replace("|", "\\|").replace("\n", " ")[:200]
            rows.append(
                f"| {rollouts.problem_ids[i]} | {rollouts.golds[i]} | {text} | "
                f"{float(rollouts.rewards[i]):.2f} | {float(rollouts.advantages[i]):+.3f} |"
            )
        self._tensorboard.add_text("samples/completions", "\n".join(rows), self.iteration + 1)

    # -- checkpoints ---------------------------------------------------------------------------

    def get_state(
        self,
        components: Optional[Union[str, Collection[str]]] = None,
        *,
        not_components: Optional[Union[str, Collection[str]]] = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        state: dict[str, Any] = {
            "iteration": self.iteration,
            "time_total": self._time_total,
            "timesteps_total": self._timesteps_total,
            "data": self.train_problems.get_state(),
        }
        if self._check_component("learner", components, not_components):
            state["learner"] = {}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self._iteration = state.get("iteration", self._iteration)
        self._time_total = state.get("time_total", self._time_total)
        self._timesteps_total = state.get("timesteps_total", self._timesteps_total)
        if "data" in state:
            self.train_problems.set_state(state["data"])
        self._carry_over = None  # surplus groups are not checkpointed: they are regenerated

    def get_checkpointable_components(self) -> list[tuple[str, Checkpointable]]:
        return [("learner", _LearnerCheckpoint(self.learner))]

    def save_to_path(self, path=None, *, state=None, filesystem=None, use_msgpack=False) -> str:
        """Writes the checkpoint to a temporary sibling folder, then renames it into place, so a
        crash mid-save never leaves a half-written checkpoint at ``path``."""
        if path is None or filesystem is not None or "://" in str(path):
            return super().save_to_path(
                path, state=state, filesystem=filesystem, use_msgpack=use_msgpack
            )
        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        try:
            super().save_to_path(str(tmp), state=state, use_msgpack=use_msgpack)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return str(target)

    def restore_from_path(self, path, *args, **kwargs) -> None:
        if not Path(path).is_dir() and "://" not in str(path):
            raise FileNotFoundError(f"no checkpoint folder at {path}")
        # RLlib's override syncs EnvRunners we do not have; the generic restore is what we need.
        Checkpointable.restore_from_path(self, path, *args, **kwargs)
        self.generation.sync_weights(self.learner.state_dict_for_generation())

    def restore_env_runners(self, env_runner_group) -> list:
        return []

    @classmethod
    def default_resource_request(cls, config: Union[RLVRConfig, dict]) -> PlacementGroupFactory:
        """The driver's bundle plus one per generation worker, so Tune reserves them all."""
        if isinstance(config, dict):
            config = cls.get_default_config().update_from_dict(config)
        learner_gpus = 1 if config.resolved_device().startswith("cuda") else 0
        bundles = [{"CPU": 1, "GPU": learner_gpus}] + GenerationPool.bundle(
            config.num_generation_workers,
            config.num_cpus_per_generation_worker,
            config.num_gpus_per_generation_worker,
        )
        return PlacementGroupFactory(bundles=bundles, strategy="PACK")

    def cleanup(self) -> None:
        if getattr(self, "generation", None) is not None:
            self.generation.shutdown()
        if getattr(self, "_tensorboard", None) is not None:
            self._tensorboard.close()
        for env in (getattr(self, "env", None), getattr(self, "_held_out_env", None)):
            if env is not None:
                env.close()


class _LearnerCheckpoint(Checkpointable):
    """Checkpoints the learner as a Hugging Face policy folder plus safetensors/JSON state."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def get_ctor_args_and_kwargs(self):
        return (), {}

    def get_checkpointable_components(self) -> list:
        return []

    def save_to_path(self, path=None, *, state=None, filesystem=None, use_msgpack=False) -> str:
        self.learner.save(path)
        return str(path)

    def restore_from_path(self, path, *, component=None, filesystem=None, **kwargs) -> None:
        self.learner.load(path)


def _worker_device(cfg: RLVRConfig) -> str:
    return "cuda" if cfg.num_gpus_per_generation_worker else "cpu"


def _accumulate(metrics: dict[str, float], key: str, value: float) -> None:
    metrics[key] = metrics.get(key, 0.0) + value


def _nest(flat: dict[str, float]) -> dict[str, Any]:
    """``{"clip/upper_frac": x}`` -> ``{"clip": {"upper_frac": x}}`` (RLlib-style result dict)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, tail = key.partition("/")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    return nested


__all__ = ["RLVRAlgorithm", "RLVRConfig"]
