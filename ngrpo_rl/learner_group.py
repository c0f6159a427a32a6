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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import ray
import torch
from torch import Tensor

from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.distributed import DistributedContext, free_port, init_process_group
from ngrpo_rl.learner import Learner, UpdateStats
from ngrpo_rl.models import load_tokenizer
from ngrpo_rl.settings import Settings

logger = logging.getLogger(__name__)


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
        owner = self.learner if part == "learner" else self.learner.critic
        owner.save(path)

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
        self.tokenizer = load_tokenizer(model_path)
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
                [w.rendezvous.remote() for w in self.workers], timeout=placement_timeout_s
            )[0]
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise RuntimeError(
                f"the {world_size} learner actors could not start within {placement_timeout_s:g} s: "
                f"does the cluster have {world_size} x (CPU {settings.num_cpus_per_learner:g}, GPU "
                f"{settings.num_gpus_per_learner:g}, {dict(settings.custom_resources_per_learner)}) free "
                f"beside the driver and the generation workers? (ray.available_resources(): "
                f"{ray.available_resources()}); lower num_cpus_per_learner / num_learners or add nodes"
            ) from None
        ray.get(
            [w.setup.remote(settings, model_path, address, port, critic_kwargs) for w in self.workers]
        )
        self.critic = _CriticPart(self) if critic_kwargs is not None else None

    def annotate(self, batch: TrainingBatch) -> TrainingBatch:
        """The batch with reference log-probs and critic values, computed across the group."""
        ref = ray.put(batch)
        return ray.get([w.annotate.remote(ref) for w in self.workers])[0]

    def update(self, batch: TrainingBatch) -> dict[str, float]:
        """One update of the group on ``batch``; the metrics of the whole batch."""
        ref = ray.put(batch)
        parts = ray.get([w.update_stats.remote(ref) for w in self.workers])
        return UpdateStats.merge(parts).metrics()

    def state_dict_for_generation(self) -> dict[str, Tensor]:
        """The policy weights from rank 0 (every rank joins: FSDP2 gathers its shards)."""
        return ray.get([w.state_dict_for_generation.remote() for w in self.workers])[0]

    def weights_for_generation(self) -> ray.ObjectRef:
        """The policy weights as an object-store reference written by rank 0: generation workers
        fetch them from there, without a copy through the driver."""
        return ray.get([w.weights_ref.remote() for w in self.workers])[0][0]

    def save(self, path: str) -> None:
        self._save(path, "learner")

    def load(self, path: str) -> None:
        self._load(path, "learner")

    def node_ids(self) -> list[str]:
        """The Ray node each learner runs on, by rank."""
        return ray.get([w.node_id.remote() for w in self.workers])

    def _save(self, path: str, part: str) -> None:
        # Every rank joins (FSDP2 gathers its shards in save); only rank 0 writes.
        ray.get([w.save.remote(str(path), part) for w in self.workers])

    def _load(self, path: str, part: str) -> None:
        ray.get([w.load.remote(str(path), part) for w in self.workers])

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
