"""A learner group: ``num_learners`` Ray actors training one policy as a torch.distributed group.

Configured the RLlib way, ``config.learners(num_learners=2, num_cpus_per_learner=1,
num_gpus_per_learner=0)``; ``num_learners=0`` keeps the learner in the driver. Each actor holds a
:class:`ngrpo_rl.learner.Learner` whose model is wrapped in DDP (or sharded with FSDP2,
``learner_strategy="fsdp2"``), over gloo on CPUs and NCCL on GPUs. Every actor receives the whole
batch (through the object store, once) and trains on its share of each mini-batch while the loss
keeps the mini-batch's global token and sequence counts (``ngrpo_rl.distributed``), so an update of
the group is the update one learner would make on the same batch.

The group answers what the pipeline and the RLlib shell ask of a learner (``annotate``,
``update``, ``state_dict_for_generation``, ``save``, ``load``, ``tokenizer``), so it drops in for
one. Weights for the generation workers come from rank 0 through the object store
(``weights_for_generation``: rank 0 puts them there, the workers fetch them; on GPUs a broadcast
group between rank 0 and the vLLM workers would skip the CPU copy, see
``ngrpo_rl.generation.vllm_backend``).

Checkpoints are written by rank 0 into a folder every learner can read when restoring: on several
nodes that folder must be on shared storage, as RLlib's checkpoints must be.

Faults: a learner that dies during ``annotate`` or ``update`` brings the group down with it (the
others wait in a collective for it), so the whole group is replaced, restores the learner state it
last saved or loaded (the weights of the last checkpoint, or the initial model before the first)
and runs the call again; ``learner/restarts`` counts it. The updates since that checkpoint are
lost; the data stream goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import ray
import torch
from ray.exceptions import ActorUnavailableError, RayActorError
from torch import Tensor

from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.distributed import DistributedContext, free_port, init_process_group
from ngrpo_rl.learner import Learner, UpdateStats
from ngrpo_rl.models import load_tokenizer
from ngrpo_rl.settings import Settings

logger = logging.getLogger(__name__)

WORKER_FAILURES = (RayActorError, ActorUnavailableError)


class LearnerWorker:
    """The body of one learner actor: joins the process group, then holds a ``Learner``."""

    def __init__(self, rank: int, world_size: int, num_threads: int) -> None:
        torch.set_num_threads(max(1, num_threads))
        self.rank = rank
        self.world_size = world_size
        self.learner: Learner | None = None

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0's address and a free port: where the group meets."""
        return ray.util.get_node_ip_address(), free_port()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def setup(
        self,
        settings: Settings,
        model_path: str,
        address: str,
        port: int,
        critic_kwargs: Mapping[str, Any] | None,
    ) -> None:
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        if self.world_size > 1:
            init_process_group(self.rank, self.world_size, address, port, device)
        critic = None
        if critic_kwargs is not None:
            from ngrpo_rl.critic import Critic

            critic = Critic(device=device, **critic_kwargs)
        self.learner = Learner(
            settings,
            model_path=model_path,
            device=device,
            critic=critic,
            distributed=DistributedContext(self.rank, self.world_size, settings.learner_strategy),
        )

    def annotate(self, batch: TrainingBatch) -> TrainingBatch:
        return self.learner.annotate(batch)

    def update_stats(self, batch: TrainingBatch) -> UpdateStats:
        return self.learner.update_stats(batch)

    def state_dict_for_generation(self) -> dict[str, Tensor] | None:
        state = self.learner.state_dict_for_generation()  # a collective under FSDP2
        return state if self.rank == 0 else None

    def weights_ref(self) -> list[ray.ObjectRef] | None:
        """Rank 0's weights put in the object store by rank 0 itself; the reference comes back in
        a list so that Ray hands over the reference, not the weights."""
        state = self.learner.state_dict_for_generation()
        return [ray.put(state)] if self.rank == 0 else None

    def save(self, path: str, part: str) -> None:
        if part == "critic":  # every rank holds the same whole critic: rank 0 writes it
            if self.rank == 0:
                self.learner.critic.save(path)
            return
        self.learner.save(path)  # every rank joins (FSDP2 gathers); rank 0 writes

    def load(self, path: str, part: str) -> None:
        owner = self.learner if part == "learner" else self.learner.critic
        owner.load(path)


class LearnerGroup:
    """``num_learners`` learner actors behind the interface of one ``Learner``.

    Args:
        settings: the run's settings (``num_learners`` > 0, the learners' resources and
            ``learner_strategy`` among them).
        model_path: the policy's Hugging Face folder (every node must be able to read it).
        critic_kwargs: the keyword arguments of ``ngrpo_rl.critic.Critic`` (all but ``device``)
            for PPO; each learner builds its own and averages its gradients with the others'.
        placement_timeout_s: how long the learner actors may wait for resources before the group
            gives up with an error naming what it asked for.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model_path: str,
        critic_kwargs: Mapping[str, Any] | None = None,
        placement_timeout_s: float = 600.0,
    ) -> None:
        if settings.num_learners < 1:
            raise ValueError(f"a LearnerGroup needs num_learners >= 1, got {settings.num_learners}")
        if not ray.is_initialized():
            raise RuntimeError("a LearnerGroup needs Ray: call ray.init() first, or set num_learners=0")
        self.settings = settings
        self.model_path = model_path
        self.critic_kwargs = critic_kwargs
        self.placement_timeout_s = placement_timeout_s
        self.tokenizer = load_tokenizer(model_path)
        self.num_restarts = 0
        # Where each part was last checkpointed or loaded from: a restarted group starts there.
        self._restore_points: dict[str, str] = {}
        self.workers: list[Any] = []
        self._start()
        self.critic = _CriticPart(self) if critic_kwargs is not None else None

    def _start(self) -> None:
        settings = self.settings
        world_size = settings.num_learners
        remote = ray.remote(
            num_cpus=settings.num_cpus_per_learner,
            num_gpus=settings.num_gpus_per_learner,
            resources=dict(settings.custom_resources_per_learner) or None,
            max_restarts=0,
        )(LearnerWorker)
        threads = max(1, int(settings.num_cpus_per_learner))
        self.workers = [remote.remote(rank, world_size, threads) for rank in range(world_size)]
        try:
            # Every actor answers once placed; the group meets at rank 0's address.
            address, port = ray.get(
                [w.rendezvous.remote() for w in self.workers], timeout=self.placement_timeout_s
            )[0]
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise RuntimeError(
                f"the {world_size} learner actors could not start within {self.placement_timeout_s:g} s: "
                f"does the cluster have {world_size} x (CPU {settings.num_cpus_per_learner:g}, GPU "
                f"{settings.num_gpus_per_learner:g}, {dict(settings.custom_resources_per_learner)}) free "
                f"beside the driver and the generation workers? (ray.available_resources(): "
                f"{ray.available_resources()}); lower num_cpus_per_learner / num_learners or add nodes"
            ) from None
        ray.get(
            [w.setup.remote(settings, self.model_path, address, port, self.critic_kwargs) for w in self.workers]
        )

    def _call_all(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every learner; raises ``RayActorError`` as soon as one has died
        (the others may be blocked in a collective waiting for it)."""
        refs = [getattr(worker, method).remote(*args) for worker in self.workers]
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done[0])
        return ray.get(refs)

    def _call_all_recovering(self, method: str, *args: Any) -> list[Any]:
        """``_call_all``, but a learner that died is replaced: the whole group restarts from the
        last checkpoint it saved or loaded (else from the initial model) and the call runs again."""
        try:
            return self._call_all(method, *args)
        except WORKER_FAILURES as error:
            logger.warning(
                "a learner died during %s (%s); restarting the group from %s", method, error,
                self._restore_points.get("learner", "the initial model"),
            )
            self.restart()
            return self._call_all(method, *args)

    def set_restore_point(self, part: str, path: str) -> None:
        """Where a restarted group restores ``part`` (``"learner"`` or ``"critic"``) from: the
        algorithm names its checkpoint's folders once the checkpoint is in place (a save writes
        to a temporary folder first)."""
        self._restore_points[part] = str(path)

    def restart(self) -> None:
        """Replaces every learner actor and restores the last saved or loaded state."""
        self.shutdown()
        self.num_restarts += 1
        self._start()
        for part, path in self._restore_points.items():
            self._call_all("load", path, part)

    def annotate(self, batch: TrainingBatch) -> TrainingBatch:
        """The batch with reference log-probs and critic values, computed across the group."""
        return self._call_all_recovering("annotate", ray.put(batch))[0]

    def update(self, batch: TrainingBatch) -> dict[str, float]:
        """One update of the group on ``batch``; the metrics of the whole batch, with
        ``learner/restarts`` counting the group's restarts so far."""
        parts = self._call_all_recovering("update_stats", ray.put(batch))
        metrics = UpdateStats.merge(parts).metrics()
        metrics["learner/restarts"] = float(self.num_restarts)
        return metrics

    def state_dict_for_generation(self) -> dict[str, Tensor]:
        """The policy weights from rank 0 (every rank joins: FSDP2 gathers its shards)."""
        return self._call_all("state_dict_for_generation")[0]

    def weights_for_generation(self) -> ray.ObjectRef:
        """The policy weights as an object-store reference written by rank 0: generation workers
        fetch them from there, without a copy through the driver."""
        return self._call_all("weights_ref")[0][0]

    def save(self, path: str) -> None:
        self._save(path, "learner")

    def load(self, path: str) -> None:
        self._load(path, "learner")

    def node_ids(self) -> list[str]:
        """The Ray node each learner runs on, by rank."""
        return ray.get([w.node_id.remote() for w in self.workers])

    def _save(self, path: str, part: str) -> None:
        # Every rank joins (FSDP2 gathers its shards in save); only rank 0 writes.
        self._call_all("save", str(path), part)

    def _load(self, path: str, part: str) -> None:
        self._call_all("load", str(path), part)
        self._restore_points[part] = str(path)

    def shutdown(self) -> None:
        """Stops the learner actors (idempotent)."""
        for worker in self.workers:
            try:
                ray.kill(worker)
            except Exception as error:  # noqa: BLE001 - Ray may already be shutting down
                logger.debug("could not kill learner actor: %s", error)
        self.workers = []


class _CriticPart:
    """The group's critics as one checkpoint component (``save`` / ``load``)."""

    def __init__(self, group: LearnerGroup) -> None:
        self.group = group

    def save(self, path: str) -> None:
        self.group._save(path, "critic")

    def load(self, path: str) -> None:
        self.group._load(path, "critic")


__all__ = ["LearnerGroup", "LearnerWorker"]
