"""What a learner needs to train as one of several torch.distributed processes.

Every learner of a group receives the whole batch and draws the same mini-batch order (the same
seeded generator), so the global counts of a mini-batch (its tokens and sequences, which the loss
aggregation divides by) are known on every rank without communication. Each rank then trains on
its contiguous share of the mini-batch's rows (:meth:`DistributedContext.shard`); the gradients are
summed across ranks, which gives exactly the gradient of the whole mini-batch.

Collectives must match across ranks: DDP all-reduces once per synced backward and FSDP2 gathers
parameters in every forward, so every rank runs the same number of micro-batches
(:meth:`DistributedContext.micro_batches`); a rank with fewer rows runs a dummy micro-batch whose
loss is multiplied by zero. The same holds for the no-grad passes (reference log-probs, critic
values, recomputed old log-probs): :func:`rowwise` shards the rows, pads the micro-batch count and
gathers the results on every rank.

This module imports no Ray: the process group is set up by whoever starts the processes
(``ngrpo_rl.learner_group`` with Ray actors, or ``torchrun``).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a group of ``world_size`` learners (rank 0 writes checkpoints).

    ``strategy`` is ``"ddp"`` (a whole model per rank, gradients all-reduced) or ``"fsdp2"``
    (parameters, gradients and optimizer state sharded with ``fully_shard``).
    """

    rank: int = 0
    world_size: int = 1
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}")
        if self.strategy not in ("ddp", "fsdp2"):
            raise ValueError(f"strategy must be 'ddp' or 'fsdp2', got {self.strategy!r}")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard_bounds(self, num_rows: int) -> tuple[int, int]:
        """``[start, end)`` of this rank's contiguous share of ``num_rows`` rows (sizes differ by
        at most one; the first ``num_rows % world_size`` ranks take one more)."""
        size, extra = divmod(num_rows, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return start, start + size + (1 if self.rank < extra else 0)

    def shard(self, rows: Tensor) -> Tensor:
        """This rank's contiguous share of ``rows`` (a 1-D index tensor)."""
        start, end = self.shard_bounds(len(rows))
        return rows[start:end]

    def micro_batches(self, rows: Tensor, micro_batch_size: int) -> Iterator[tuple[Tensor, float]]:
        """``(micro_rows, weight)`` for this rank's share of ``rows``: as many micro-batches as the
        rank with the most rows needs, the missing ones a dummy row (``rows[:1]``) of weight 0."""
        local = self.shard(rows)
        largest = math.ceil(len(rows) / self.world_size)
        count = max(1, math.ceil(largest / micro_batch_size))
        for index in range(count):
            micro = local[index * micro_batch_size : (index + 1) * micro_batch_size]
            if len(micro):
                yield micro, 1.0
            else:
                yield rows[:1], 0.0


SINGLE = DistributedContext()


def rowwise(
    context: DistributedContext,
    num_rows: int,
    micro_batch_size: int,
    fn: Callable[[Tensor], Tensor],
) -> Tensor:
    """``fn(rows) -> [len(rows), ...]`` over all ``num_rows`` rows, each rank computing its share
    in micro-batches; returns the whole ``[num_rows, ...]`` result on every rank."""
    rows = torch.arange(num_rows)
    outputs: list[Tensor] = []
    last = None
    # Dummy micro-batches run too, on ranks with fewer rows, so collectives inside fn match.
    for micro, weight in context.micro_batches(rows, micro_batch_size):
        last = fn(micro)
        if weight:
            outputs.append(last)
    local = torch.cat(outputs) if outputs else last[:0]
    if not context.is_distributed:
        return local
    largest = math.ceil(num_rows / context.world_size)
    padded = torch.zeros((largest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    gathered = [torch.empty_like(padded) for _ in range(context.world_size)]
    dist.all_gather(gathered, padded)
    pieces = []
    for rank, part in enumerate(gathered):
        start, end = DistributedContext(rank, context.world_size, context.strategy).shard_bounds(num_rows)
        pieces.append(part[: end - start])
    return torch.cat(pieces)


def all_reduce_mean_(tensors: list[Tensor]) -> None:
    """Averages ``tensors`` across ranks in place, in one flat all-reduce."""
    if not tensors or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


def wrap_for_training(model: torch.nn.Module, context: DistributedContext, device: str) -> torch.nn.Module:
    """The module the learner runs its training forward through.

    DDP: a ``DistributedDataParallel`` wrapper (buffers are not re-broadcast each forward: the
    ranks run different numbers of forwards between steps, and the causal LM's buffers never
    change). FSDP2: ``fully_shard`` on every decoder layer, then on the whole model, in place (the
    returned module is ``model`` itself). One process: ``model``.
    """
    if not context.is_distributed:
        return model
    if context.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.device(device).index or 0] if str(device).startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
    from torch.distributed.fsdp import fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    return model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (``model.model.layers`` for Qwen2 and
    Llama), the unit FSDP2 shards; empty when the model has no such list."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    return list(layers) if isinstance(layers, torch.nn.ModuleList) else []


def no_gradient_sync(module: torch.nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """A context in which backward passes accumulate gradients locally (``skip=True``), or a
    plain context (``skip=False``: this backward synchronises)."""
    if not skip:
        return contextlib.nullcontext()
    if hasattr(module, "no_sync"):  # DDP
        return module.no_sync()
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        return _fsdp_no_sync(module)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(module: torch.nn.Module) -> Iterator[None]:
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def full_state_dict(model: torch.nn.Module) -> dict[str, Tensor]:
    """The whole model's weights on the CPU on every rank, gathering sharded (FSDP2) ones; a
    collective when the model is sharded, so every rank must call it."""
    out = {}
    for name, value in model.state_dict().items():
        if hasattr(value, "full_tensor"):  # a DTensor shard
            value = value.full_tensor()
        out[name] = value.detach().to("cpu")
    return out


def load_sharded(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    weights: Mapping[str, Tensor],
    optimizer_tensors: Mapping[str, Tensor],
    optimizer_meta: Mapping[str, Any],
) -> None:
    """Loads whole (gathered) weights and optimizer state into an FSDP2-sharded model and its
    optimizer: each rank keeps its shard of every tensor (``distribute_tensor``)."""
    from torch.distributed.tensor import distribute_tensor

    from ngrpo_rl.state_io import optimizer_from_tensors

    sharded = {}
    for name, value in model.state_dict().items():
        full = weights[name].to(device=value.device, dtype=value.dtype)
        if hasattr(value, "device_mesh"):  # a DTensor: keep this rank's shard
            full = distribute_tensor(full, value.device_mesh, value.placements)
        sharded[name] = full
    model.load_state_dict(sharded)
    # The optimizer's states follow its parameters' order; shard each like its parameter.
    order = [p for group in optimizer.param_groups for p in group["params"]]
    local = {}
    for key, value in optimizer_tensors.items():
        if key.startswith("state/") and value.dim() > 0:
            param = order[int(key.split("/")[1])]
            if hasattr(param, "device_mesh"):
                value = distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
        local[key] = value
    optimizer_from_tensors(optimizer, local, optimizer_meta)


def free_port() -> int:
    """A TCP port free on this host now (for the group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def init_process_group(rank: int, world_size: int, address: str, port: int, device: str) -> None:
    """Joins the group: gloo on CPU, NCCL on CUDA (TCP rendezvous at ``address:port``)."""
    os.environ["MASTER_ADDR"] = address
    os.environ["MASTER_PORT"] = str(port)
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size)


__all__ = [
    "SINGLE",
    "DistributedContext",
    "all_reduce_mean_",
    "decoder_layers",
    "free_port",
    "full_state_dict",
    "init_process_group",
    "load_sharded",
    "no_gradient_sync",
    "rowwise",
    "wrap_for_training",
]
