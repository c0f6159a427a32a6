"""The torch learner: policy-gradient updates of a causal LM on a ``TrainingBatch``.

One ``update`` is DESIGN.md section 4 step 5: ``num_epochs`` passes over shuffled mini-batches of
``minibatch_size`` sequences (or the batch split into ``num_minibatches``), each split into micro-batches whose gradients accumulate to exactly the
gradient of the whole mini-batch (the aggregation is given the mini-batch's token and sequence
counts), then gradient clipping and one AdamW step. The loss is the sum of the active registered
terms (``ngrpo_rl.loss_terms``): the policy loss, a KL penalty to a frozen reference model (loaded
only when ``kl_coef > 0``), an entropy bonus, and with a critic the clipped value loss, whose
gradient reaches only the critic (a separate model with its own optimizer).

The learner reads a ``ngrpo_rl.settings.Settings``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl import losses
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.loss_terms import TermInputs, active_terms, loss_terms, merge_sums
from ngrpo_rl.models import load_model, save_model
from ngrpo_rl.models.forward import pad_batch, response_logprobs
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
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model_path: str,
        device: str = "cpu",
        critic: Any = None,
    ) -> None:
        self.settings = settings
        self.device = device
        self.model, self.tokenizer = load_model(model_path, dtype=settings.dtype, device=device)
        self.model.train()
        self.reference_model = None
        if settings.kl_coef > 0:
            self.reference_model = copy.deepcopy(self.model).eval().requires_grad_(False)
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
        self.terms = active_terms(settings, has_critic=critic is not None)

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
            fields["ref_logprobs"] = self._reference_logprobs(padded)
        if self.critic is not None:
            fields["values"] = self._in_micro_batches(padded, self.critic.values)
        return batch.with_fields(**{k: v.cpu() for k, v in fields.items()})

    @torch.no_grad()
    def _reference_logprobs(self, padded: dict[str, Tensor]) -> Tensor:
        return self._in_micro_batches(
            padded, lambda micro: response_logprobs(self.reference_model, micro, self.settings.temperature)
        )

    def _in_micro_batches(self, padded: dict[str, Tensor], fn: Callable[[dict], Tensor]) -> Tensor:
        size = self.settings.micro_batch_size
        rows = padded["input_ids"].shape[0]
        return torch.cat(
            [fn({k: v[start : start + size] for k, v in padded.items()}) for start in range(0, rows, size)]
        )

    def _pad(self, batch: TrainingBatch) -> dict[str, Tensor]:
        return pad_batch(
            batch.prompt_token_ids, batch.response_token_ids, self.tokenizer.pad_token_id, device=self.device
        )

    # -- the learn stage -----------------------------------------------------------------------

    def update(self, batch: TrainingBatch) -> dict[str, float]:
        """Trains on ``batch`` (advantages already computed); returns the step's metrics."""
        if batch.advantages is None:
            raise ValueError("the batch has no advantages: run an advantage estimator first")
        cfg = self.settings
        started = time.perf_counter()
        padded = self._pad(batch)
        mask = padded["response_mask"].to(torch.float32)
        if cfg.mask_truncated:  # DAPO's overlong filtering: truncated responses teach nothing
            mask = mask * ~torch.tensor(batch.truncated, device=mask.device)[:, None]
        tensors = {
            "mask": mask,
            "old_logp": batch.padded_old_logprobs().to(self.device),
            "advantages": batch.advantages.to(device=self.device, dtype=torch.float32),
        }
        for name, key in (("ref_logprobs", "ref_logp"), ("values", "old_values"), ("returns", "returns")):
            value = getattr(batch, name)
            if value is not None:
                tensors[key] = value.to(device=self.device, dtype=torch.float32)
        if "kl" in self.terms and "ref_logp" not in tensors:  # the annotate stage did not run
            tensors["ref_logp"] = self._reference_logprobs(padded)

        num_seqs = len(batch)
        if cfg.minibatch_size is not None:
            minibatch_size = min(cfg.minibatch_size, num_seqs)
        else:
            minibatch_size = math.ceil(num_seqs / (cfg.num_minibatches or 1))
        sums: list[dict[str, float]] = []
        policy_sums: list[dict[str, float]] = []
        grad_norms: list[float] = []
        critic_norms: list[float] = []
        losses_per_step: list[float] = []
        for _ in range(cfg.num_epochs):
            order = torch.randperm(num_seqs, generator=self.generator)
            for start in range(0, num_seqs, minibatch_size):
                rows = order[start : start + minibatch_size]
                step = self._minibatch_step(padded, tensors, rows, sums, policy_sums)
                losses_per_step.append(step["loss"])
                grad_norms.append(step["grad_norm"])
                if "critic_grad_norm" in step:
                    critic_norms.append(step["critic_grad_norm"])

        totals = merge_sums(sums)
        tokens = max(totals.get("tokens", 0.0), 1.0)
        metrics = losses.merge_stat_sums(policy_sums)  # clip/* and ratio/*
        metrics.update(
            {
                "losses/total": _mean(losses_per_step),
                "policy/entropy": totals.get("entropy", 0.0) / tokens,
                "policy/kl": totals.get("kl", 0.0) / tokens,
                "optim/grad_norm": _mean(grad_norms),
                "optim/lr": self.scheduler.get_last_lr()[0],
                "optim/num_updates": float(self.num_updates),
                "timers/learn": time.perf_counter() - started,
            }
        )
        if self.critic is not None:
            metrics.update(
                {
                    "critic/value_loss": totals.get("value_loss", 0.0) / tokens,
                    "critic/clip_frac": totals.get("value_clipped", 0.0) / tokens,
                    "critic/values_mean": totals.get("values", 0.0) / tokens,
                    "critic/grad_norm": _mean(critic_norms),
                }
            )
        return metrics

    def _minibatch_step(
        self,
        padded: dict[str, Tensor],
        tensors: dict[str, Tensor],
        rows: Tensor,
        sums: list[dict[str, float]],
        policy_sums: list[dict[str, float]],
    ) -> dict[str, float]:
        cfg = self.settings
        # Global counts of the mini-batch: micro-batch losses then add up to the mini-batch loss.
        counts = {
            "num_tokens": float(tensors["mask"][rows].sum()),
            "num_seqs": len(rows),
            "max_len": cfg.max_new_tokens,
        }
        entropy_in_loss = "entropy" in self.terms
        self.optimizer.zero_grad(set_to_none=True)
        if self.critic is not None:
            self.critic.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for start in range(0, len(rows), cfg.micro_batch_size):
            micro = rows[start : start + cfg.micro_batch_size]
            micro_batch = {k: v[micro] for k, v in padded.items()}
            logp, entropy = response_logprobs(
                self.model, micro_batch, cfg.temperature, return_entropy=True, entropy_grad=entropy_in_loss
            )
            part = {k: v[micro] for k, v in tensors.items()}
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
            )
            loss = torch.zeros((), device=logp.device)
            for name, params in self.terms.items():
                out = loss_terms.get(name)(inputs, **params)
                loss = loss + out.loss
                (policy_sums if name == "policy" else sums).append(out.sums)
            loss.backward()
            total += float(loss.detach())
            sums.append(
                {"entropy": float((entropy.detach() * inputs.mask).sum()), "tokens": float(inputs.mask.sum())}
            )
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        self.scheduler.step()
        self.num_updates += 1
        step = {"loss": total, "grad_norm": grad_norm}
        if self.critic is not None:
            step["critic_grad_norm"] = float(self.critic.clip_and_step())
        return step

    # -- weights and state ---------------------------------------------------------------------

    def state_dict_for_generation(self) -> dict[str, Tensor]:
        """The policy weights, detached, on the CPU (what generation workers load)."""
        return {k: v.detach().to("cpu") for k, v in self.model.state_dict().items()}

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``path/policy`` (a Hugging Face directory, safetensors), the optimizer and RNG
        state (safetensors) and the counters (JSON). No pickle anywhere. The critic, if any, is
        saved by its own checkpoint component."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self.model, self.tokenizer, path / "policy")
        tensors, meta = optimizer_to_tensors(self.optimizer)
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/generator"] = self.generator.get_state()
        atomic_write(path / "optimizer.safetensors", lambda p: save_file(tensors, p))
        state = {
            "optimizer": meta,
            "scheduler": {"last_epoch": self.scheduler.last_epoch},
            "num_updates": self.num_updates,
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
        model, _ = load_model(path / "policy", dtype=self.settings.dtype, device=self.device)
        self.model.load_state_dict(model.state_dict())
        optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
        self.scheduler.last_epoch = state["scheduler"]["last_epoch"]
        self.scheduler._last_lr = [  # keep get_last_lr() consistent with the restored step
            group["lr"] for group in self.optimizer.param_groups
        ]
        self.num_updates = state["num_updates"]
        torch.set_rng_state(tensors["rng/torch"])
        self.generator.set_state(tensors["rng/generator"])
        random.setstate(random_state_from_json(state["python_random"]))


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)
