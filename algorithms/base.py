"""``RLVRAlgorithm``: the RLlib shell around the training pipeline (DESIGN.md sections 4 and 5).

An RLlib ``Algorithm`` in name and contract (``train()``, ``save_to_path``, ``from_checkpoint``,
Tune), but not built on RLlib's EnvRunners, RLModules or Learners, which copy the model into the
driver and cannot hold bf16 state. The engine is ``ngrpo_rl.pipeline.TrainingPipeline``, plain code
that runs without Ray; this class owns what a shell owns: the generation workers, the weight sync,
evaluation, TensorBoard, checkpoints and resources. The algorithms differ only in their config
defaults.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

import gymnasium
import ngrpo_rl.envs  # noqa: F401  (registers the gymnasium ids)
import torch
from ngrpo_rl.algorithms.checkpoints import (
    FORMAT_VERSION,
    CheckpointError,
    FolderCheckpoint,
    Manifest,
    check_algorithm,
    check_loadable_as,
    check_models,
    model_shape,
    read_manifest,
    read_state,
    write_atomically,
    write_manifest,
    write_state,
)
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.default_model import resolve_model_path
from ngrpo_rl.algorithms.reporting import TensorBoardWriter, nest
from ngrpo_rl.envs.problems import Problem
from ray import cloudpickle
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils import force_list
from ray.rllib.utils.checkpoints import (
    CHECKPOINT_VERSION_LEARNER_AND_ENV_RUNNER,
    Checkpointable,
)
from ray.tune.execution.placement_groups import PlacementGroupFactory

from ngrpo_rl import __version__, advantages
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.evaluation import PassAtKResult, evaluate_pass_at_k
from ngrpo_rl.generation import SamplingParams, derive_seed
from ngrpo_rl.generation.workers import GenerationPool
from ngrpo_rl.learner import Learner, master_dtype
from ngrpo_rl.learner_group import LearnerGroup
from ngrpo_rl.pipeline.collect import ProblemStream
from ngrpo_rl.pipeline.engine import build_pipeline

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
        settings = cfg.settings()
        device = cfg.resolved_device()
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        self.model_path = resolve_model_path(cfg.model_name_or_path)

        critic_kwargs = self._critic_kwargs(settings)
        self._critic_source = critic_kwargs["model_name_or_path"] if critic_kwargs else None
        if settings.num_learners > 0:
            # Learner actors in one torch.distributed group; each builds its own critic.
            self.learner = LearnerGroup(settings, model_path=self.model_path, critic_kwargs=critic_kwargs)
            self.critic = self.learner.critic
        else:
            from ngrpo_rl.critic import Critic

            self.critic = Critic(device=device, **critic_kwargs) if critic_kwargs is not None else None
            self.learner = Learner(settings, model_path=self.model_path, device=device, critic=self.critic)
        self.tokenizer = self.learner.tokenizer
        # The env owns the dataset, the prompt template and the verifier; the tokenizer lets a
        # chat template render prompts the way the policy expects.
        self.env = self._make_env(cfg.env_config)
        self.train_problems = ProblemStream(self.env.unwrapped.problems, seed=settings.seed)
        self.generation = GenerationPool(
            cfg.generation_backend,
            self.model_path,
            num_workers=cfg.num_generation_workers,
            num_cpus_per_worker=cfg.num_cpus_per_generation_worker,
            num_gpus_per_worker=cfg.num_gpus_per_generation_worker,
            custom_resources_per_worker=cfg.custom_resources_per_generation_worker,
            sleep_between_calls=cfg.generation_sleep_between_calls,
            backend_kwargs={
                "device": device if cfg.num_generation_workers == 0 else _worker_device(cfg),
                "dtype": cfg.dtype,
                "seed": settings.seed,
                "batch_size": cfg.generation_batch_size,
                **dict(cfg.generation_backend_kwargs),
            },
        )
        self.pipeline = build_pipeline(
            settings,
            generate=self.generation.generate,
            env=self.env.unwrapped,
            problems=self.train_problems,
            learner=self.learner,
        )
        self.last_batch: TrainingBatch | None = None
        self._held_out_env: gymnasium.Env | None = None
        self._tensorboard = self._open_tensorboard()

    def _critic_kwargs(self, settings) -> dict[str, Any] | None:
        """PPO's separate value model (``ngrpo_rl.critic.Critic`` keywords but the device),
        initialised from the policy unless told otherwise; None without a critic."""
        if not advantages.needs_critic(self.config.advantage_estimator):
            return None
        source = self.config.critic_model_name_or_path
        return {
            "model_name_or_path": resolve_model_path(source) if source else self.model_path,
            "lr": settings.critic_lr,
            "weight_decay": settings.weight_decay,
            "betas": tuple(settings.betas),
            "grad_clip": settings.grad_clip,
            "dtype": master_dtype(settings.dtype),  # trained like the policy: float32 master weights
            "seed": settings.seed,
        }

    def _make_env(self, env_config: dict) -> gymnasium.Env:
        return gymnasium.make(self.config.env, tokenizer=self.tokenizer, **dict(env_config))

    def _open_tensorboard(self) -> TensorBoardWriter | None:
        """A standalone run writes its own events; under Tune, Tune's logger writes them."""
        cfg = self.config
        under_tune = getattr(self, "_storage", None) is not None
        if not cfg.tensorboard or (under_tune and cfg.tensorboard_dir is None):
            return None
        return TensorBoardWriter(cfg.tensorboard_dir or self.logdir, cfg.log_completions)

    # -- one iteration -------------------------------------------------------------------------

    def step(self) -> dict:
        """One ``train()`` iteration: the training step, then pass@k evaluation when due."""
        results = self.training_step()
        interval = self.config.evaluation_interval
        if interval and (self.iteration + 1) % interval == 0:
            started = time.perf_counter()
            evaluation = self.evaluate_pass_at_k()
            results.update(evaluation.as_metrics())
            results["timers/evaluate"] = time.perf_counter() - started
            if self._tensorboard is not None:
                self._tensorboard.pass_at_k_curve(evaluation.overall, self.iteration + 1)
        if self._tensorboard is not None:
            self._tensorboard.scalars(results, self.iteration + 1)
        return nest(results)

    def training_step(self) -> dict[str, float]:
        """DESIGN.md section 4: steps 1-5 in the pipeline, step 6 here; returns step 7's metrics."""
        # 1-5. Draw prompts, generate and score groups, shape, filter (oversampling), annotate,
        #      estimate advantages, learn.
        batch, metrics = self.pipeline.step(self.iteration)
        # With overlap_generation the next batch is being generated; nothing else may use the
        # generation backend (weight sync, evaluation) until it is done.
        metrics["timers/overlap_wait"] = self.pipeline.wait()
        # 6. New weights to the generation workers.
        if "optim/num_updates" in metrics:
            started = time.perf_counter()
            self.generation.sync_weights(self.learner.weights_for_generation())
            metrics["timers/sync"] = time.perf_counter() - started
        metrics["generation/worker_restarts"] = float(self.generation.num_restarts)
        if self._tensorboard is not None:
            self._tensorboard.completions(batch, self.iteration + 1)
        self.last_batch = batch  # what the update saw, for inspection and debugging
        return metrics

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate_pass_at_k(self, problems: list[Problem] | None = None) -> PassAtKResult:
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
            problem_ids=[p.id for p in problems],
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

    # -- checkpoints ---------------------------------------------------------------------------

    def get_state(
        self,
        components: str | Collection[str] | None = None,
        *,
        not_components: str | Collection[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The algorithm's own state, plain numbers, strings, lists and dicts (msgpack writes it):
        counters, the data stream's position and the groups a filter carried over; the learner
        and the critic are components with folders of their own (placeholders here)."""
        self.pipeline.wait()  # a background collection moves the data stream
        state: dict[str, Any] = {
            "iteration": self.iteration,
            "time_total": self._time_total,
            "timesteps_total": self._timesteps_total,
            "data": self.train_problems.get_state(),
            "collector": self.pipeline.get_state(),
        }
        for name, _ in self.get_checkpointable_components():
            if self._check_component(name, components, not_components):
                state[name] = {}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what ``get_state`` returned (the components are restored from their folders)."""
        self._iteration = state.get("iteration", self._iteration)
        self._time_total = state.get("time_total", self._time_total)
        self._timesteps_total = state.get("timesteps_total", self._timesteps_total)
        if "data" in state:
            self.train_problems.set_state(state["data"])
        # The groups a filter kept beyond prompts_per_step: without them a restored NGRPO or DAPO
        # run would train on other data than an uninterrupted one.
        self.pipeline.set_state(state.get("collector", {}))

    def get_checkpointable_components(self) -> list[tuple[str, Checkpointable]]:
        components: list[tuple[str, Checkpointable]] = [("learner", FolderCheckpoint(self.learner))]
        if self.critic is not None:
            components.append(("critic", FolderCheckpoint(self.critic)))
        return components

    def save_to_path(
        self,
        path: str | os.PathLike | None = None,
        *,
        state: dict[str, Any] | None = None,
        filesystem: Any = None,
        use_msgpack: bool = True,
    ) -> str:
        """Writes a checkpoint folder (``ngrpo_rl.algorithms.checkpoints`` describes its files) and
        returns its path; a temporary folder when ``path`` is None.

        The folder is written beside ``path`` and renamed into place, so a save that fails or is
        killed midway leaves the previous checkpoint at ``path`` whole. The algorithm's own state
        is always written with msgpack (``use_msgpack`` is accepted for RLlib's and Tune's calls and
        ignored); the learner and critic write safetensors and JSON.
        """
        if path is None:
            path = Path(tempfile.gettempdir()) / f"ngrpo_rl-checkpoint-{uuid.uuid4().hex}"
        _refuse_remote(path, filesystem, "save to")
        saved = write_atomically(path, lambda tmp: self._write_checkpoint(Path(tmp), state))
        if isinstance(self.learner, LearnerGroup):  # a restarted group resumes from here
            for name, _ in self.get_checkpointable_components():
                self.learner.set_restore_point(name, str(Path(saved) / name))
        return saved

    def _write_checkpoint(self, folder: Path, state: dict[str, Any] | None) -> None:
        """The checkpoint's files in ``folder`` (empty, about to be renamed into place); the
        manifest comes last."""
        metadata = {**self.get_metadata(), "format": "msgpack"}
        metadata.setdefault("checkpoint_version", str(CHECKPOINT_VERSION_LEARNER_AND_ENV_RUNNER))
        (folder / self.METADATA_FILE_NAME).write_text(json.dumps(metadata))
        # RLlib's from_checkpoint needs the class and its config; RLlib always pickles them.
        with open(folder / self.CLASS_AND_CTOR_ARGS_FILE_NAME, "wb") as file:
            cloudpickle.dump({"class": type(self), "ctor_args_and_kwargs": self.get_ctor_args_and_kwargs()}, file)
        components = self.get_checkpointable_components()
        names = [name for name, _ in components]
        for name, component in components:
            if state is None or name in state:
                component.save_to_path(folder / name)
        own = state if state is not None else self.get_state(not_components=names)
        write_state(folder, {k: v for k, v in own.items() if k not in names})
        write_manifest(folder, self.checkpoint_manifest())

    def checkpoint_manifest(self) -> Manifest:
        """What this algorithm's checkpoints say about themselves (``ngrpo_rl_checkpoint.json``)."""
        return Manifest(
            format_version=FORMAT_VERSION,
            algorithm=type(self).__name__,
            algorithm_bases=[cls.__name__ for cls in type(self).__mro__],
            models=self._model_shapes(),
            ngrpo_rl_version=__version__,
            iteration=self.iteration,
        )

    def _model_shapes(self) -> dict[str, dict[str, Any]]:
        """The shape of the policy (and the critic) this algorithm trains, from the folders they
        were loaded from."""
        shapes = {"policy": model_shape(self.model_path)}
        if self.critic is not None:
            shapes["critic"] = model_shape(self._critic_source)
        return shapes

    def restore_from_path(
        self,
        path: str | os.PathLike,
        *,
        component: str | None = None,
        filesystem: Any = None,
        **kwargs: Any,
    ) -> None:
        """Loads the checkpoint at ``path`` into this algorithm.

        The manifest is read and checked first (format version, algorithm class, model shapes),
        then the state file, and only then is anything loaded, so an incompatible or damaged
        checkpoint is refused (``CheckpointError``, naming the path and the fix) before this
        algorithm changes. ``component="learner"`` loads only that component from ``path`` (its
        own folder), RLlib's way.
        """
        _refuse_remote(path, filesystem, "restore from")
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no checkpoint folder at {path}")
        if component is not None:
            Checkpointable.restore_from_path(self, path, component=component, **kwargs)
        else:
            state = self._checked_state(path)
            for name, part in self.get_checkpointable_components():
                part.restore_from_path(path / name)
            self.set_state(state)
        self.generation.sync_weights(self.learner.weights_for_generation())

    def _checked_state(self, path: Path) -> dict[str, Any]:
        """The state file of the checkpoint at ``path`` once its manifest, its algorithm, its model
        shapes and its component folders are checked against this algorithm (``CheckpointError``
        otherwise)."""
        manifest = read_manifest(path)
        check_algorithm(manifest, path, type(self))
        check_models(manifest, path, self._model_shapes())
        state = read_state(path)
        missing = [name for name, _ in self.get_checkpointable_components() if not (path / name).is_dir()]
        if missing:
            raise CheckpointError(
                f"the checkpoint at {path} lacks the folder(s) {missing}; it is incomplete, "
                f"restore an earlier one"
            )
        return state

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | Any, filesystem: Any = None, **kwargs: Any) -> Algorithm:
        """The algorithm a checkpoint holds, built from its saved config and restored.

        The manifest is checked before RLlib unpickles the saved class and config
        (``class_and_ctor_args.pkl``): ``GRPO.from_checkpoint`` refuses an NGRPO checkpoint, and a
        newer format or a damaged manifest is refused naming the path.
        """
        if hasattr(path, "to_directory"):  # a Ray Train / Tune Checkpoint
            path = path.to_directory()
        _refuse_remote(path, filesystem, "restore from")
        if not Path(path).is_dir():
            raise FileNotFoundError(f"no checkpoint folder at {path}")
        check_loadable_as(read_manifest(path), path, cls)
        read_state(path)  # a damaged state file is refused before an algorithm is built for it
        return super().from_checkpoint(str(path), **kwargs)

    def restore_env_runners(self, env_runner_group) -> list:
        return []

    @classmethod
    def default_resource_request(cls, config: RLVRConfig | dict) -> PlacementGroupFactory:
        """The driver's bundle, one per learner actor and one per generation worker, so Tune
        reserves them all (and places the actors a trial starts in them)."""
        if isinstance(config, dict):
            config = cls.get_default_config().update_from_dict(config)
        in_driver = config.num_learners == 0
        driver_gpus = 1 if in_driver and config.resolved_device().startswith("cuda") else 0
        learner = {"CPU": float(config.num_cpus_per_learner), **dict(config.custom_resources_per_learner)}
        if config.num_gpus_per_learner:
            learner["GPU"] = float(config.num_gpus_per_learner)
        bundles = [{"CPU": 1, "GPU": driver_gpus}]
        bundles += [dict(learner) for _ in range(config.num_learners)]
        bundles += GenerationPool.bundle(
            config.num_generation_workers,
            config.num_cpus_per_generation_worker,
            config.num_gpus_per_generation_worker,
            config.custom_resources_per_generation_worker,
        )
        return PlacementGroupFactory(bundles=bundles, strategy="PACK")

    def cleanup(self) -> None:
        if getattr(self, "pipeline", None) is not None:
            self.pipeline.close()
        if getattr(self, "generation", None) is not None:
            self.generation.shutdown()
        if isinstance(getattr(self, "learner", None), LearnerGroup):
            self.learner.shutdown()
        if getattr(self, "_tensorboard", None) is not None:
            self._tensorboard.close()
        for env in (getattr(self, "env", None), getattr(self, "_held_out_env", None)):
            if env is not None:
                env.close()


def _refuse_remote(path: Any, filesystem: Any, action: str) -> None:
    """Checkpoints live in local folders (on shared storage for several nodes); under Tune,
    ``storage_path`` uploads them."""
    import pyarrow.fs

    local = filesystem is None or isinstance(filesystem, pyarrow.fs.LocalFileSystem)
    if not local or "://" in str(path):
        raise ValueError(
            f"cannot {action} {path}: ngrpo_rl checkpoints are local folders; use a local or "
            f"network-mounted path (Tune's RunConfig(storage_path=...) syncs them to the cloud)"
        )


def _worker_device(cfg: RLVRConfig) -> str:
    return "cuda" if cfg.num_gpus_per_generation_worker else "cpu"


__all__ = ["RLVRAlgorithm", "RLVRConfig"]
