"""The torch learner: policy-gradient updates of a causal LM on a ``TrainingBatch``.

One ``update`` is DESIGN.md section 4 step 5: ``num_epochs`` passes over shuffled mini-batches of
``minibatch_size`` sequences (or the batch split into ``num_minibatches``), each split into micro-batches whose gradients accumulate to exactly the
gradient of the whole mini-batch (the aggregation is given the mini-batch's token and sequence
counts), then gradient clipping and one AdamW step. A micro-batch holds at most
``micro_batch_size`` sequences and ``micro_batch_max_tokens`` padded tokens: the rows of a
mini-batch are sorted by length and packed in order (``ngrpo_rl.micro_batches``), each micro-batch is cut to
its own longest prompt and response, and the rows of a group run one pass over their shared prompt
(``ngrpo_rl.models.forward.response_logits``), so little compute goes to padding or to repeating a
prompt. None of this changes the update beyond float rounding. The loss is the sum of the active
registered terms (``ngrpo_rl.loss_terms``): the policy loss, a KL penalty to a frozen reference model (loaded
only when ``kl_coef > 0``), an entropy bonus, and with a critic the clipped value loss, whose
gradient reaches only the critic (a separate model with its own optimizer).

With ``recompute_old_logprobs`` the old log-probs are the learner's own, recomputed before the
update, and ``tis_cap`` weights each token's policy loss by the truncated importance weight
min(pi_learner / pi_sampler, C). A half-precision ``dtype`` trains float32 master weights under
autocast. In a learner group (``ngrpo_rl.learner_group``) each rank trains its share of every
mini-batch with the mini-batch's global counts (``ngrpo_rl.distributed``) and reports additive
``UpdateStats`` that merge exactly.

The learner reads a ``ngrpo_rl.settings.Settings``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl import losses
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.distributed import (
    SINGLE,
    DistributedContext,
    all_reduce_mean_,
    full_state_dict,
    load_sharded,
    no_gradient_sync,
    rowwise,
    wrap_for_training,
)
from ngrpo_rl.loss_terms import TermInputs, active_terms, loss_terms
from ngrpo_rl.micro_batches import PaddedBatch, micro_batch_plan
from ngrpo_rl.models import load_model, save_model
from ngrpo_rl.models.forward import response_logprobs
from ngrpo_rl.registry import Registry
from ngrpo_rl.settings import Settings
from ngrpo_rl.state_io import (
    atomic_write,
    jsonable,
    optimizer_from_tensors,
    optimizer_to_tensors,
    random_state_from_json,
    random_state_to_json,
)


class NonFiniteTrainingError(FloatingPointError):
    """Too many optimizer steps in a row had a non-finite loss or gradient (``max_nonfinite_steps``)."""


LRSchedule = Callable[[int, int, int], float]
"""``schedule(step, warmup_steps, total_steps) -> multiplier of the base learning rate``."""

lr_schedules: Registry[LRSchedule] = Registry("learning-rate schedule")


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


@lr_schedules.register("constant")
def constant_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then the base rate."""
    return _warmup(step, warmup_steps)


@lr_schedules.register("linear")
def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then linear decay to 0 at ``total_steps``."""
    decay = max(0.0, 1.0 - max(0, step - warmup_steps) / max(1, total_steps - warmup_steps))
    return _warmup(step, warmup_steps) * decay


@lr_schedules.register("cosine")
def cosine_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to 0 at ``total_steps``."""
    progress = min(1.0, max(0, step - warmup_steps) / max(1, total_steps - warmup_steps))
    return _warmup(step, warmup_steps) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Learner:
    """Holds the policy, its optimizer, a frozen reference model when ``kl_coef > 0``, and
    optionally the critic.

    Args:
        settings: the run's settings (``Settings``): optimisation, loss and batching fields.
        model_path: the policy's Hugging Face folder.
        device: where the policy trains.
        critic: a ``ngrpo_rl.critic.Critic`` for PPO (adds the value term), else None.
        distributed: this process's rank in a learner group (``ngrpo_rl.learner_group``), whose
            torch.distributed process group is already initialised; the default is one process.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model_path: str,
        device: str = "cpu",
        critic: Any = None,
        distributed: DistributedContext = SINGLE,
    ) -> None:
        self.settings = settings
        self.device = device
        self.distributed = distributed
        # Half-precision runs keep float32 master weights and optimizer state and compute in the
        # half dtype under autocast, as verl's FSDP workers do (mixed precision): AdamW steps of
        # lr 1e-6 round away on most bfloat16 weights.
        self.compute_dtype = resolve_dtype(settings.dtype)
        self.master_dtype = master_dtype(settings.dtype)
        self.model, self.tokenizer = load_model(model_path, dtype=self.master_dtype, device=device)
        self.model.train()
        if settings.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.reference_model = None
        if settings.kl_coef > 0:  # frozen, so it is kept in the compute dtype
            self.reference_model = copy.deepcopy(self.model).to(self.compute_dtype or self.master_dtype)
            self.reference_model.eval().requires_grad_(False)
        # The module the training forward runs through: DDP's wrapper, or the model sharded in
        # place by FSDP2 (then self.model is that sharded model too).
        self.train_model = wrap_for_training(self.model, distributed, device)
        if self.reference_model is not None and distributed.strategy == "fsdp2":
            wrap_for_training(self.reference_model, distributed, device)
        self.critic = critic
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=settings.lr,
            betas=tuple(settings.betas),
            weight_decay=settings.weight_decay,
        )
        schedule = lr_schedules.get(settings.lr_schedule)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: schedule(step, settings.warmup_steps, settings.total_steps),
        )
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.num_updates = 0
        self.nonfinite_in_a_row = 0
        self.terms = active_terms(settings, has_critic=critic is not None)
        # A group's rows share a pass over their prompt, which makes the number of model calls
        # depend on the micro-batch; FSDP2 gathers parameters in every call, so its ranks must
        # call alike and run every row whole.
        self.share_prompts = distributed.strategy != "fsdp2"

    # -- the annotate stage --------------------------------------------------------------------

    @torch.no_grad()
    def annotate(self, batch: TrainingBatch) -> TrainingBatch:
        """The batch with what the frozen models say of it: ``ref_logprobs`` (with a reference
        model) and the critic's ``values`` (with a critic), both ``[N, R]``."""
        if not len(batch) or (self.reference_model is None and self.critic is None):
            return batch
        padded = self._pad(batch)
        fields: dict[str, Tensor] = {}
        if self.reference_model is not None:
            fields["ref_logprobs"] = self._logprobs_of(self.reference_model, padded)
        if self.critic is not None:
            fields["values"] = self._rowwise(padded, self.critic.values)
        return batch.with_fields(**{k: v.cpu() for k, v in fields.items()})

    @torch.no_grad()
    def _logprobs_of(self, model: torch.nn.Module, padded: PaddedBatch) -> Tensor:
        return self._rowwise(
            padded,
            lambda micro: response_logprobs(
                model, micro, self.settings.temperature, share_prompts=self.share_prompts
            ),
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """Half-precision compute for forward passes (a no-op in float32 or float64)."""
        if self.compute_dtype not in (torch.bfloat16, torch.float16):
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.compute_dtype)

    def _rowwise(self, padded: PaddedBatch, fn: Callable[[dict], Tensor]) -> Tensor:
        """``fn`` (a ``[rows, R']`` result of a micro-batch cut to width ``R'``) over all rows in
        packed micro-batches, shared out across a learner group; ``[N, R]``, 0 past each row's
        micro-batch width."""
        num_rows = len(padded)
        plan = self._micro_batches(padded, torch.arange(num_rows))

        def run(local: Tensor) -> Tensor:  # this rank's contiguous share of the rows
            out: Tensor | None = None
            for micro, weight in plan:  # within the share, sorted by length, as many as every rank
                with self.autocast():
                    value = fn(padded.select(micro))
                if out is None:
                    out = value.new_zeros((len(local), padded.response_length))
                if weight:
                    out[micro - local[0], : value.shape[1]] = value
            return out

        # One call per rank with its whole share; run() packs it into micro-batches.
        share = max(1, math.ceil(num_rows / self.distributed.world_size))
        return rowwise(self.distributed, num_rows, share, run)

    def _micro_batches(self, padded: PaddedBatch, rows: Tensor) -> list[tuple[Tensor, float]]:
        """This rank's ``(micro_rows, weight)`` of ``rows`` (see :func:`micro_batch_plan`)."""
        cfg = self.settings
        return micro_batch_plan(
            rows,
            padded.prompt_lengths,
            padded.response_lengths,
            max_rows=cfg.micro_batch_size,
            max_tokens=cfg.micro_batch_max_tokens,
            prompt_groups=padded.prompt_groups if self.share_prompts else None,
            context=self.distributed,
        )

    def _pad(self, batch: TrainingBatch) -> PaddedBatch:
        return PaddedBatch.of(batch, self.tokenizer.pad_token_id, self.device)

    # -- the learn stage -----------------------------------------------------------------------

    def update(self, batch: TrainingBatch) -> dict[str, float]:
        """Trains on ``batch`` (advantages already computed); returns the step's metrics."""
        return self.update_stats(batch).metrics()

    def update_stats(self, batch: TrainingBatch) -> UpdateStats:
        """Trains on ``batch`` and returns this rank's additive statistics (a learner group merges
        its ranks' with ``UpdateStats.merge``; ``.metrics()`` turns them into the step's metrics)."""
        if batch.advantages is None:
            raise ValueError("the batch has no advantages: run an advantage estimator first")
        cfg = self.settings
        started = time.perf_counter()
        padded = self._pad(batch)
        tensors = self._loss_tensors(batch, padded)
        stats = UpdateStats()
        if "is_weights" in tensors:
            sums, stats.maxima = importance_sampling_sums(tensors, cfg.tis_cap)
            stats.sums_list.append(sums)

        num_seqs = len(batch)
        if cfg.minibatch_size is not None:
            minibatch_size = min(cfg.minibatch_size, num_seqs)
        else:
            minibatch_size = math.ceil(num_seqs / (cfg.num_minibatches or 1))
        for _ in range(cfg.num_epochs):
            order = torch.randperm(num_seqs, generator=self.generator)
            for start in range(0, num_seqs, minibatch_size):
                self._minibatch_step(padded, tensors, order[start : start + minibatch_size], stats)
        stats.lr = self.scheduler.get_last_lr()[0]
        stats.num_updates = self.num_updates
        stats.seconds = time.perf_counter() - started
        stats.has_critic = self.critic is not None
        return stats

    def _loss_tensors(self, batch: TrainingBatch, padded: PaddedBatch) -> dict[str, Tensor]:
        """The per-row tensors the loss terms read, ``[N, R]`` (advantages ``[N]`` or ``[N, R]``)."""
        cfg = self.settings
        mask = padded.tensors["response_mask"].to(torch.float32)
        if cfg.mask_truncated:  # DAPO's overlong filtering: truncated responses teach nothing
            mask = mask * ~torch.tensor(batch.truncated, device=mask.device)[:, None]
        sampler_logp = batch.padded_old_logprobs().to(self.device)
        tensors = {
            "mask": mask,
            "old_logp": sampler_logp,
            "advantages": batch.advantages.to(device=self.device, dtype=torch.float32),
        }
        if cfg.recompute_old_logprobs:
            # The learner's own log-probs before this update: the first step's ratio is then 1 up
            # to the model's determinism, whatever engine sampled (verl's "recompute old_log_prob").
            tensors["old_logp"] = self._logprobs_of(self.model, padded) * (mask > 0)
            # Truncated importance sampling corrects for the sampler being another policy:
            # weight min(pi_learner / pi_sampler, C) per token (Yao et al. 2025, "Your efficient RL
            # framework secretly brings you off-policy RL training"; verl, OpenRLHF).
            log_weights = (tensors["old_logp"] - sampler_logp) * (mask > 0)
            tensors["sampler_logp"] = sampler_logp
            tensors["is_weights"] = torch.exp(log_weights)
        for name, key in (("ref_logprobs", "ref_logp"), ("values", "old_values"), ("returns", "returns")):
            value = getattr(batch, name)
            if value is not None:
                tensors[key] = value.to(device=self.device, dtype=torch.float32)
        if "kl" in self.terms and "ref_logp" not in tensors:  # the annotate stage did not run
            tensors["ref_logp"] = self._logprobs_of(self.reference_model, padded)
        return tensors

    def _micro_batch_loss(
        self, micro_batch: dict[str, Tensor], part: dict[str, Tensor], counts: dict[str, Any]
    ) -> tuple[TermInputs, Tensor, list[tuple[str, dict[str, float]]]]:
        """The forward pass of one micro-batch and its share of the mini-batch loss, term by term."""
        cfg = self.settings
        logp, entropy = response_logprobs(
            self.train_model, micro_batch, cfg.temperature, return_entropy=True,
            entropy_grad="entropy" in self.terms, share_prompts=self.share_prompts,
        )
        inputs = TermInputs(
            logp=logp,
            old_logp=part["old_logp"],
            advantages=part["advantages"],
            mask=part["mask"],
            loss_agg_mode=cfg.loss_agg_mode,
            counts=counts,
            entropy=entropy,
            ref_logp=part.get("ref_logp"),
            values=self.critic.values(micro_batch) if self.critic is not None else None,
            old_values=part.get("old_values"),
            returns=part.get("returns"),
            is_weights=_capped(part.get("is_weights"), cfg.tis_cap),
        )
        loss = torch.zeros((), device=logp.device)
        term_sums = []
        for name, params in self.terms.items():
            out = loss_terms.get(name)(inputs, **params)
            loss = loss + out.loss
            term_sums.append((name, out.sums))
        return inputs, loss, term_sums

    def _minibatch_step(
        self, padded: PaddedBatch, tensors: dict[str, Tensor], rows: Tensor, stats: UpdateStats
    ) -> None:
        """One optimizer step on the mini-batch ``rows``: this rank's share of its micro-batches,
        gradients summed over the group, clipping, AdamW."""
        cfg = self.settings
        world = self.distributed.world_size
        # Global counts of the mini-batch: micro-batch losses then add up to the mini-batch loss,
        # and across ranks too (every rank holds the whole batch, so no communication is needed).
        counts = {
            "num_tokens": float(tensors["mask"][rows].sum()),
            "num_seqs": len(rows),
            "max_len": cfg.max_new_tokens,
        }
        self.optimizer.zero_grad(set_to_none=True)
        if self.critic is not None:
            self.critic.optimizer.zero_grad(set_to_none=True)
        micro_batches = self._micro_batches(padded, rows)
        total = 0.0
        policy_sums: list[dict[str, float]] = []
        for index, (micro, weight) in enumerate(micro_batches):
            # Only the last backward of the step synchronises gradients across the group.
            with no_gradient_sync(self.train_model, skip=index < len(micro_batches) - 1):
                micro_batch = padded.select(micro)
                width = micro_batch["response_mask"].shape[1]
                with self.autocast():
                    inputs, loss, term_sums = self._micro_batch_loss(
                        micro_batch,
                        {k: v[micro, :width] if v.dim() == 2 else v[micro] for k, v in tensors.items()},
                        counts,
                    )
                # DDP and FSDP average gradients over ranks; scaling by the group size makes that
                # average the sum of the ranks' shares, the gradient of the whole mini-batch.
                (loss * (weight * world)).backward()
            if not weight:  # a dummy micro-batch, run only so that collectives match
                continue
            total += float(loss.detach())
            for name, sums in term_sums:
                (policy_sums if name == "policy" else stats.sums_list).append(sums)
            stats.sums_list.append(
                {"entropy": float((inputs.entropy.detach() * inputs.mask).sum()), "tokens": float(inputs.mask.sum())}
            )
        if self.critic is not None and self.distributed.is_distributed:
            all_reduce_mean_([p.grad for p in self.critic.parameters() if p.grad is not None])
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        # The norm is the group's (gradients are all-reduced), so every rank decides alike.
        if math.isfinite(grad_norm):
            self.optimizer.step()
            self.nonfinite_in_a_row = 0
        else:
            self._skip_nonfinite_step(grad_norm, stats)
        self.scheduler.step()
        self.num_updates += 1
        stats.policy_sums.extend(policy_sums)
        if not stats.step_losses:
            stats.first_step_policy_sums = policy_sums
        stats.step_losses.append(total)
        stats.grad_norms.append(grad_norm)
        if self.critic is not None:
            stats.critic_grad_norms.append(float(self.critic.clip_and_step()))

    def _skip_nonfinite_step(self, grad_norm: float, stats: UpdateStats) -> None:
        """Counts a step whose loss or gradient is not finite (its update is not applied); too many
        in a row stop training, before anything non-finite reaches the weights or a checkpoint."""
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_a_row += 1
        stats.skipped_steps += 1
        limit = self.settings.max_nonfinite_steps
        if self.nonfinite_in_a_row >= limit:
            raise NonFiniteTrainingError(
                f"{self.nonfinite_in_a_row} optimizer steps in a row had a non-finite gradient "
                f"(norm {grad_norm}); training stops (max_nonfinite_steps={limit}) with the weights of "
                f"the last good step. Lower lr, set grad_clip, check the rewards, or use float32."
            )

    # -- weights and state ---------------------------------------------------------------------

    def state_dict_for_generation(self) -> dict[str, Tensor]:
        """The policy weights, detached, on the CPU, in the run's dtype (what generation workers
        load). With FSDP2 the shards are gathered, a collective every rank of the group must join."""
        weights = full_state_dict(self.model)
        if self.compute_dtype is None or self.compute_dtype == self.master_dtype:
            return weights
        return {name: value.to(self.compute_dtype) for name, value in weights.items()}

    def weights_for_generation(self) -> dict[str, Tensor]:
        """What ``GenerationPool.sync_weights`` takes: the state dict (a learner group gives an
        object-store reference instead)."""
        return self.state_dict_for_generation()

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``path/policy`` (a Hugging Face directory, safetensors), the optimizer and RNG
        state (safetensors) and the counters (JSON). No pickle anywhere. The critic, if any, is
        saved by its own checkpoint component."""
        from safetensors.torch import save_file

        path = Path(path)
        # In a learner group every rank calls save (FSDP2 gathers its shards here); rank 0 writes.
        weights = full_state_dict(self.model) if self.distributed.strategy == "fsdp2" else None
        tensors, meta = optimizer_to_tensors(self.optimizer)
        if self.distributed.rank != 0:
            return
        path.mkdir(parents=True, exist_ok=True)
        save_model(self.model, self.tokenizer, path / "policy", state_dict=weights)
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/generator"] = self.generator.get_state()
        atomic_write(path / "optimizer.safetensors", lambda p: save_file(tensors, p))
        state = {
            "optimizer": meta,
            "scheduler": {"last_epoch": self.scheduler.last_epoch},
            "num_updates": self.num_updates,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "python_random": random_state_to_json(random.getstate()),
            "settings": jsonable(asdict(self.settings)),
        }
        atomic_write(path / "learner_state.json", lambda p: Path(p).write_text(json.dumps(state)))

    def load(self, path: str | os.PathLike) -> None:
        """Restores what ``save`` wrote; a missing or corrupt file raises naming the path."""
        from safetensors.torch import load_file

        path = Path(path)
        try:
            state = json.loads((path / "learner_state.json").read_text())
            tensors = load_file(str(path / "optimizer.safetensors"))
        except (OSError, ValueError) as error:
            raise ValueError(f"unreadable learner checkpoint at {path}: {error}") from error
        model, _ = load_model(path / "policy", dtype=self.master_dtype, device=self.device)
        if self.distributed.strategy == "fsdp2" and self.distributed.is_distributed:
            load_sharded(self.model, self.optimizer, model.state_dict(), tensors, state["optimizer"])
        else:
            self.model.load_state_dict(model.state_dict())
            optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
        self.scheduler.last_epoch = state["scheduler"]["last_epoch"]
        self.scheduler._last_lr = [  # keep get_last_lr() consistent with the restored step
            group["lr"] for group in self.optimizer.param_groups
        ]
        self.num_updates = state["num_updates"]
        self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)
        torch.set_rng_state(tensors["rng/torch"])
        self.generator.set_state(tensors["rng/generator"])
        random.setstate(random_state_from_json(state["python_random"]))


HALF_DTYPES = (torch.bfloat16, torch.float16)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16``; None stays None (the checkpoint's own dtype)."""
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def master_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """The dtype trainable weights are kept in: float32 for a half-precision run, else ``dtype``."""
    resolved = resolve_dtype(dtype)
    return torch.float32 if resolved in HALF_DTYPES else resolved


def _mean(values: Sequence[float]) -> float:
    return sum(values) / max(len(values), 1)


def _capped(weights: Tensor | None, cap: float | None) -> Tensor | None:
    """The truncated importance weights, or None when ``tis_cap`` is off (the weights are then only
    measured, in the ``is/*`` metrics)."""
    if weights is None or cap is None:
        return None
    return weights.clamp(max=cap)


def importance_sampling_sums(
    tensors: dict[str, Tensor], cap: float | None
) -> tuple[dict[str, float], dict[str, float]]:
    """``(sums, maxima)`` of the learner-vs-sampler mismatch over the batch's response tokens:
    the weights pi_learner / pi_sampler before and after the cap, and the log-prob gap."""
    valid = tensors["mask"] > 0
    weights = tensors["is_weights"][valid]
    capped = weights.clamp(max=cap) if cap is not None else weights
    gap = (tensors["old_logp"] - tensors["sampler_logp"])[valid].abs()
    sums = {
        "is/tokens": float(valid.sum()),
        "is/weight_sum": float(capped.sum()),
        "is/raw_weight_sum": float(weights.sum()),
        "is/capped_count": float((weights > cap).sum()) if cap is not None else 0.0,
        "is/logprob_gap_sum": float(gap.sum()),
    }
    any_token = weights.numel() > 0
    maxima = {
        "is/weight_max": float(capped.max()) if any_token else 0.0,
        "is/raw_weight_max": float(weights.max()) if any_token else 0.0,
        "is/logprob_gap_max": float(gap.max()) if any_token else 0.0,
    }
    return sums, maxima


@dataclass
class UpdateStats:
    """What one rank measured during ``Learner.update_stats``: additive sums, so that a learner
    group's ranks merge exactly (``merge``), and ``metrics()`` for the step's metrics."""

    sums_list: list[dict[str, float]] = field(default_factory=list)
    policy_sums: list[dict[str, float]] = field(default_factory=list)
    first_step_policy_sums: list[dict[str, float]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    critic_grad_norms: list[float] = field(default_factory=list)
    maxima: dict[str, float] = field(default_factory=dict)
    skipped_steps: int = 0
    lr: float = 0.0
    num_updates: int = 0
    seconds: float = 0.0
    has_critic: bool = False

    @staticmethod
    def merge(parts: Sequence[UpdateStats]) -> UpdateStats:
        """The group's statistics from its ranks': sums and per-step losses add up (each rank's
        loss is its share of the mini-batch loss); gradient norms, the learning rate and counters
        are the same on every rank after the all-reduce, so rank 0's are kept."""
        first = parts[0]
        return UpdateStats(
            sums_list=[s for p in parts for s in p.sums_list],
            policy_sums=[s for p in parts for s in p.policy_sums],
            first_step_policy_sums=[s for p in parts for s in p.first_step_policy_sums],
            step_losses=[sum(losses) for losses in zip(*(p.step_losses for p in parts))],
            grad_norms=first.grad_norms,
            critic_grad_norms=first.critic_grad_norms,
            maxima={k: max(p.maxima[k] for p in parts) for k in first.maxima},
            skipped_steps=first.skipped_steps,
            lr=first.lr,
            num_updates=first.num_updates,
            seconds=max(p.seconds for p in parts),
            has_critic=first.has_critic,
        )

    def metrics(self) -> dict[str, float]:
        """The step's metrics: losses, entropy, KL, clip and ratio statistics (over all steps, and
        of the first step: ``ratio/first_step_*``, where the policy is still the sampler's),
        gradient norms, the importance weights with ``recompute_old_logprobs``, the critic's."""
        totals: dict[str, float] = {}
        for part in self.sums_list:
            for key, value in part.items():
                totals[key] = totals.get(key, 0.0) + value
        tokens = max(totals.get("tokens", 0.0), 1.0)
        metrics = losses.merge_stat_sums(self.policy_sums)  # clip/* and ratio/*
        if self.first_step_policy_sums:
            first = losses.merge_stat_sums(self.first_step_policy_sums)
            metrics["ratio/first_step_min"] = first["ratio/min"]
            metrics["ratio/first_step_max"] = first["ratio/max"]
        metrics.update(
            {
                "losses/total": _mean(self.step_losses),
                "policy/entropy": totals.get("entropy", 0.0) / tokens,
                "policy/kl": totals.get("kl", 0.0) / tokens,
                "optim/grad_norm": _mean(self.grad_norms),
                "optim/lr": self.lr,
                "optim/num_updates": float(self.num_updates),
                "optim/skipped_steps": float(self.skipped_steps),
                "timers/learn": self.seconds,
            }
        )
        if "is/tokens" in totals:
            is_tokens = max(totals["is/tokens"], 1.0)
            metrics.update(
                {
                    "is/weight_mean": totals["is/weight_sum"] / is_tokens,
                    "is/raw_weight_mean": totals["is/raw_weight_sum"] / is_tokens,
                    "is/capped_frac": totals["is/capped_count"] / is_tokens,
                    "is/logprob_gap_mean": totals["is/logprob_gap_sum"] / is_tokens,
                    **self.maxima,
                }
            )
        if self.has_critic:
            metrics.update(
                {
                    "critic/value_loss": totals.get("value_loss", 0.0) / tokens,
                    "critic/clip_frac": totals.get("value_clipped", 0.0) / tokens,
                    "critic/values_mean": totals.get("values", 0.0) / tokens,
                    "critic/grad_norm": _mean(self.critic_grad_norms),
                }
            )
        return metrics
