"""Generation workers: backends in Ray actors, behind one ``generate`` call.

:class:`GenerationPool` splits the prompts of a call into contiguous chunks, one per worker, and
joins the results in order. Each chunk samples from its own seed derived from the call's, so the
samples do not depend on how fast the workers are. ``num_workers=0`` runs a single backend in
the calling process (no Ray needed), which gives the same samples as a pool of one worker.

Fault tolerance: a worker that dies during ``generate`` (``RayActorError``) is replaced by a fresh
actor, which loads the most recently synced weights and reruns the chunk once; the pool counts
these restarts in ``num_restarts``. A second failure of the same chunk propagates.

The caller starts Ray (``ray.init``); this module only creates actors. Import it lazily
(``from ngrpo_rl.generation import GenerationPool``) so that the core never imports Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import ray
import torch
from ray.exceptions import ActorUnavailableError, RayActorError
from torch import Tensor

from ngrpo_rl.generation.backend import GenerationBackend, create_backend
from ngrpo_rl.generation.types import GenerationOutput, SamplingParams, derive_seed

logger = logging.getLogger(__name__)

WORKER_FAILURES = (RayActorError, ActorUnavailableError)


class GenerationWorker:
    """The body of one Ray actor: a backend, with torch limited to the actor's CPUs.

    With ``sleep_between_calls`` the backend (one with ``sleep`` / ``wake_up``, such as vLLM with
    ``enable_sleep_mode``) frees its GPU memory after every ``generate`` so that learners placed on
    the same GPUs can train; a weight sync wakes the weights only, the next ``generate`` the rest.
    """

    def __init__(
        self,
        backend: str,
        model_name_or_path: str,
        backend_kwargs: Mapping[str, Any],
        num_threads: int,
        sleep_between_calls: bool = False,
    ) -> None:
        # Ray gives each actor a share of the CPUs; more torch threads than that oversubscribe them.
        torch.set_num_threads(max(1, num_threads))
        self.backend = create_backend(backend, model_name_or_path, **backend_kwargs)
        if sleep_between_calls and not (hasattr(self.backend, "sleep") and hasattr(self.backend, "wake_up")):
            raise ValueError(
                f"generation backend {backend!r} cannot sleep between calls (it has no sleep / "
                f"wake_up); use vllm with generation_backend_kwargs={{'enable_sleep_mode': True}}"
            )
        self.sleep_between_calls = sleep_between_calls
        self.asleep: set[str] = set()

    def generate(self, prompts: list[str], params: SamplingParams) -> GenerationOutput:
        if self.asleep:
            self.backend.wake_up(tags=sorted(self.asleep))
            self.asleep = set()
        output = self.backend.generate(prompts, params)
        if self.sleep_between_calls:
            self.backend.sleep(level=1)
            self.asleep = {"kv_cache", "weights"}
        return output

    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        if "weights" in self.asleep:
            self.backend.wake_up(tags=["weights"])
            self.asleep.discard("weights")
        self.backend.load_state_dict(state_dict)

    def ready(self) -> bool:
        return True

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


class GenerationPool:
    """``num_workers`` generation backends (Ray actors), or one in-process backend for 0.

    Args:
        backend: a registered backend name (``"hf"``; see ``ngrpo_rl.generation.backends``).
        model_name_or_path: a local model directory every worker loads.
        num_workers: Ray actors to start; 0 runs the backend in this process.
        backend_kwargs: passed to the backend constructor (``device``, ``dtype``,
            ``batch_size``, ...). Its ``seed`` (default 0) is the pool's base seed: worker ``i``
            gets ``derive_seed(seed, i)``.
        num_cpus_per_worker: CPUs each actor reserves; torch in the actor uses as many threads.
        num_gpus_per_worker: GPUs each actor reserves (0 on CPU machines).
        custom_resources_per_worker: custom Ray resources each actor reserves (to pin the
            workers to the nodes that advertise them).
        sleep_between_calls: the workers free their GPU memory after each ``generate`` (colocated
            placement: learners train on the same GPUs); see :class:`GenerationWorker`.
    """

    def __init__(
        self,
        backend: str,
        model_name_or_path: str,
        *,
        num_workers: int,
        backend_kwargs: Mapping[str, Any] | None = None,
        num_cpus_per_worker: float = 1,
        num_gpus_per_worker: float = 0,
        custom_resources_per_worker: Mapping[str, float] | None = None,
        sleep_between_calls: bool = False,
    ) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if sleep_between_calls and num_workers == 0:
            raise ValueError(
                "sleep_between_calls frees generation actors' GPU memory for colocated learners: it "
                "needs num_generation_workers > 0"
            )
        if num_workers > 0 and not ray.is_initialized():
            raise RuntimeError(
                "GenerationPool with num_workers > 0 needs Ray: call ray.init() first, "
                "or use num_workers=0 to generate in this process"
            )
        kwargs = dict(backend_kwargs or {})
        self.backend_name = backend
        self.model_name_or_path = model_name_or_path
        self.num_workers = num_workers
        self.num_cpus_per_worker = num_cpus_per_worker
        self.num_gpus_per_worker = num_gpus_per_worker
        self.custom_resources_per_worker = dict(custom_resources_per_worker or {})
        self.sleep_between_calls = sleep_between_calls
        self.num_restarts = 0
        self._base_seed = int(kwargs.pop("seed", 0))
        self._backend_kwargs = kwargs
        self._weights: ray.ObjectRef | None = None  # the last synced state dict, for restarts
        self._local: GenerationBackend | None = None
        self._actors: list[Any] = []
        if num_workers == 0:
            self._local = create_backend(
                backend, model_name_or_path, seed=derive_seed(self._base_seed, 0), **kwargs
            )
        else:
            self._actors = [self._start_actor(index) for index in range(num_workers)]
            ray.get([actor.ready.remote() for actor in self._actors])

    @staticmethod
    def bundle(
        num_workers: int,
        num_cpus_per_worker: float,
        num_gpus_per_worker: float = 0,
        custom_resources_per_worker: Mapping[str, float] | None = None,
    ) -> list[dict[str, float]]:
        """The resource bundles of the workers, for an Algorithm's ``default_resource_request``."""
        bundle = {"CPU": float(num_cpus_per_worker), **dict(custom_resources_per_worker or {})}
        if num_gpus_per_worker:
            bundle["GPU"] = float(num_gpus_per_worker)
        return [dict(bundle) for _ in range(num_workers)]

    def generate(self, prompts: list[str], params: SamplingParams) -> GenerationOutput:
        """``params.n`` samples per prompt, prompt-major, in the order of ``prompts``."""
        if self._local is not None:
            return self._local.generate(prompts, _chunk_params(params, 0))
        if not self._actors:
            raise RuntimeError("the GenerationPool has been shut down")
        chunks = _split(list(prompts), self.num_workers)
        pending = {
            index: self._actors[index].generate.remote(chunk, _chunk_params(params, index))
            for index, chunk in enumerate(chunks)
            if chunk
        }
        results: dict[int, GenerationOutput] = {}
        for index, ref in pending.items():
            try:
                results[index] = ray.get(ref)
            except WORKER_FAILURES as error:
                logger.warning("generation worker %d died (%s); restarting it", index, error)
                self._restart(index)
                results[index] = ray.get(
                    self._actors[index].generate.remote(chunks[index], _chunk_params(params, index))
                )
        return GenerationOutput.concat([results[index] for index in sorted(results)])

    def sync_weights(self, state_dict: Mapping[str, Tensor] | ray.ObjectRef) -> None:
        """Sends new policy weights to every worker, stored once in the object store (or already
        there: an ``ObjectRef``, as a learner group's rank 0 puts them)."""
        if self._local is not None:
            if isinstance(state_dict, ray.ObjectRef):
                state_dict = ray.get(state_dict)
            self._local.load_state_dict(state_dict)
            return
        if isinstance(state_dict, ray.ObjectRef):
            self._weights = state_dict
        else:
            cpu_state = {name: tensor.detach().to("cpu") for name, tensor in state_dict.items()}
            self._weights = ray.put(cpu_state)
        refs = [actor.load_state_dict.remote(self._weights) for actor in self._actors]
        for index, ref in enumerate(refs):
            try:
                ray.get(ref)
            except WORKER_FAILURES as error:
                logger.warning(
                    "generation worker %d died during weight sync (%s); restarting it", index, error
                )
                self._restart(index)  # the new worker loads self._weights

    def shutdown(self) -> None:
        """Stops the workers (idempotent)."""
        for actor in self._actors:
            _kill_quietly(actor)
        self._actors = []
        self._local = None
        self._weights = None

    def node_ids(self) -> list[str]:
        """The Ray node each worker actor runs on, in worker order (empty for ``num_workers=0``)."""
        return ray.get([actor.node_id.remote() for actor in self._actors])

    @property
    def actors(self) -> list[Any]:
        """The worker actor handles (empty for ``num_workers=0``)."""
        return list(self._actors)

    def _start_actor(self, index: int) -> Any:
        # A restarted worker gets a fresh stream, so it does not repeat its predecessor's samples.
        seed = derive_seed(self._base_seed, index)
        if self.num_restarts:
            seed = derive_seed(seed, self.num_restarts)
        remote_class = ray.remote(
            num_cpus=self.num_cpus_per_worker,
            num_gpus=self.num_gpus_per_worker,
            resources=self.custom_resources_per_worker or None,
            max_restarts=0,
        )(GenerationWorker)
        return remote_class.remote(
            self.backend_name,
            self.model_name_or_path,
            {**self._backend_kwargs, "seed": seed},
            int(self.num_cpus_per_worker),
            self.sleep_between_calls,
        )

    def _restart(self, index: int) -> None:
        _kill_quietly(self._actors[index])
        self.num_restarts += 1
        actor = self._start_actor(index)
        if self._weights is not None:
            ray.get(actor.load_state_dict.remote(self._weights))
        else:
            ray.get(actor.ready.remote())
        self._actors[index] = actor

    def __enter__(self) -> GenerationPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _kill_quietly(actor: Any) -> None:
    """Kills an actor that may already be dead, or whose Ray may be shutting down."""
    try:
        ray.kill(actor)
    except Exception as error:  # noqa: BLE001 - nothing useful to do but note it
        logger.debug("could not kill generation worker: %s", error)


def _chunk_params(params: SamplingParams, index: int) -> SamplingParams:
    """The sampling parameters of chunk ``index``: a seeded call gets a distinct seed per chunk."""
    if params.seed is None:
        return params
    return replace(params, seed=derive_seed(params.seed, index))


def _split(items: list[str], parts: int) -> list[list[str]]:
    """``items`` in ``parts`` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks
