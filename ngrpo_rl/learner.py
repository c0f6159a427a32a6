"""The torch learner: policy-gradient updates of a causal LM on scored rollouts.

One ``update`` is DESIGN.md section 4 step 5: ``num_epochs`` passes over shuffled mini-batches of
``minibatch_size`` sequences, each split into micro-batches whose gradients accumulate to exactly the
gradient of the whole mini-batch (the aggregation is given the mini-batch's token and sequence
counts), then gradient clipping and one AdamW step. The loss is the registered policy loss,
plus ``kl_coef`` times a KL estimator against a frozen reference model (loaded only when
``kl_coef > 0``), minus ``entropy_coef`` times the policy entropy.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ngrpo_rl import losses
from ngrpo_rl.generation.batching import pad_batch, response_logprobs
from ngrpo_rl.models import load_model, save_model
from ngrpo_rl.registry import Registry
from ngrpo_rl.rollouts import Rollouts

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


@dataclass
class LearnerConfig:
    """What the learner needs to know; the algorithm config fills it in."""

    model_name_or_path: str
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 1000
    grad_clip: Optional[float] = 1.0
    num_epochs: int = 1
    minibatch_size: Optional[int] = None
    micro_batch_size: int = 64
    policy_loss: str = "ppo_clip"
    policy_loss_params: dict[str, Any] = field(default_factory=dict)
    loss_agg_mode: str = "token-mean"
    max_new_tokens: int = 16
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    mask_truncated: bool = False
    temperature: float = 1.0
    seed: int = 0
    device: str = "cpu"
    dtype: Optional[str] = None


class Learner:
    """Holds the policy, the optimizer and (when ``kl_coef > 0``) a frozen reference model."""

    def __init__(self, config: LearnerConfig) -> None:
        self.config = config
        self.model, self.tokenizer = load_model(
            config.model_name_or_path, dtype=config.dtype, device=config.device
        )
        self.model.train()
        self.reference_model = None
        if config.kl_coef > 0:
            self.reference_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
        )
        schedule = lr_schedules.get(config.lr_schedule)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: schedule(step, config.warmup_steps, config.total_steps),
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.num_updates = 0

    # -- the update ----------------------------------------------------------------------------

    def update(self, rollouts: Rollouts) -> dict[str, float]:
        """Trains on ``rollouts`` (advantages already computed); returns the step's metrics."""
        if rollouts.advantages is None:
            raise ValueError("rollouts have no advantages: run an advantage estimator first")
        cfg = self.config
        started = time.perf_counter()
        batch = pad_batch(
            rollouts.prompt_token_ids,
            rollouts.response_token_ids,
            self.tokenizer.pad_token_id,
            device=cfg.device,
        )
        mask = batch["response_mask"].to(torch.float32)
        if cfg.mask_truncated:  # DAPO's overlong filtering: truncated responses teach nothing
            mask = mask * ~torch.tensor(rollouts.truncated, device=mask.device)[:, None]
        old_logp = _pad_rows(rollouts.old_logprobs, mask.shape[1]).to(cfg.device)
        advantages = rollouts.advantages.to(device=cfg.device, dtype=torch.float32)
        reference_logp = self._reference_logprobs(batch) if self.reference_model else None

        num_seqs = len(rollouts)
        minibatch_size = min(cfg.minibatch_size or num_seqs, num_seqs)
        loss_stats: list[dict[str, float]] = []
        sums = {"loss": 0.0, "kl": 0.0, "entropy": 0.0, "tokens": 0.0}
        grad_norms: list[float] = []
        for _ in range(cfg.num_epochs):
            order = torch.randperm(num_seqs, generator=self.generator)
            for start in range(0, num_seqs, minibatch_size):
                rows = order[start : start + minibatch_size]
                grad_norms.append(
                    self._minibatch_step(
                        batch, rows, mask, old_logp, advantages, reference_logp, loss_stats, sums
                    )
                )

        tokens = max(sums["tokens"], 1.0)
        metrics = losses.merge_stat_sums(loss_stats)  # clip/* and ratio/*
        metrics.update(
            {
                "losses/total": sums["loss"] / max(len(grad_norms), 1),
                "policy/entropy": sums["entropy"] / tokens,
                "policy/kl": sums["kl"] / tokens,
                "optim/grad_norm": sum(grad_norms) / max(len(grad_norms), 1),
                "optim/lr": self.scheduler.get_last_lr()[0],
                "optim/num_updates": float(self.num_updates),
                "timers/learn": time.perf_counter() - started,
            }
        )
        return metrics

    def _minibatch_step(
        self,
        batch: dict[str, torch.Tensor],
        rows: torch.Tensor,
        mask: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        reference_logp: Optional[torch.Tensor],
        loss_stats: list[dict[str, float]],
        sums: dict[str, float],
    ) -> float:
        cfg = self.config
        # Global counts of the mini-batch: micro-batch losses then add up to the mini-batch loss.
        num_tokens = float(mask[rows].sum())
        num_seqs = len(rows)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for start in range(0, num_seqs, cfg.micro_batch_size):
            micro = rows[start : start + cfg.micro_batch_size]
            micro_batch = {k: v[micro] for k, v in batch.items()}
            logp, entropy = response_logprobs(
                self.model, micro_batch, cfg.temperature, return_entropy=True
            )
            m = mask[micro]
            out = losses.compute_policy_loss(
                cfg.policy_loss, logp, old_logp[micro], advantages[micro], m,
                **cfg.policy_loss_params,
            )
            counts = dict(num_tokens=num_tokens, num_seqs=num_seqs, max_len=cfg.max_new_tokens)
            loss = losses.aggregate(out.per_token_loss, m, cfg.loss_agg_mode, **counts)
            if reference_logp is not None:
                kl = losses.kl_penalty(logp, reference_logp[micro], cfg.kl_estimator) * m
                loss = loss + cfg.kl_coef * losses.aggregate(kl, m, cfg.loss_agg_mode, **counts)
                sums["kl"] += float(kl.detach().sum())
            if cfg.entropy_coef:
                loss = loss - cfg.entropy_coef * losses.aggregate(
                    entropy * m, m, cfg.loss_agg_mode, **counts
                )
            loss.backward()
            total += float(loss.detach())
            loss_stats.append(out.stat_sums())
            sums["entropy"] += float((entropy.detach() * m).sum())
            sums["tokens"] += float(m.sum())
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        self.scheduler.step()
        self.num_updates += 1
        sums["loss"] += total
        return grad_norm

    @torch.no_grad()
    def _reference_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for start in range(0, batch["input_ids"].shape[0], self.config.micro_batch_size):
            micro = {k: v[start : start + self.config.micro_batch_size] for k, v in batch.items()}
            parts.append(response_logprobs(self.reference_model, micro, self.config.temperature))
        return torch.cat(parts)

    # -- weights and state ---------------------------------------------------------------------

    def state_dict_for_generation(self) -> dict[str, torch.Tensor]:
        """The policy weights, detached, on the CPU (what generation workers load)."""
        return {k: v.detach().to("cpu") for k, v in self.model.state_dict().items()}

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``path/policy`` (a Hugging Face directory, safetensors), the optimizer and RNG
        state (safetensors) and the counters (JSON). No pickle anywhere."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self.model, self.tokenizer, path / "policy")
        tensors, meta = _optimizer_to_tensors(self.optimizer)
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/generator"] = self.generator.get_state()
        _atomic_write(path / "optimizer.safetensors", lambda p: save_file(tensors, p))
        state = {
            "optimizer": meta,
            "scheduler": {"last_epoch": self.scheduler.last_epoch},
            "num_updates": self.num_updates,
            "python_random": _random_state_to_json(random.getstate()),
            "learner_config": _jsonable(asdict(self.config)),
        }
        _atomic_write(path / "learner_state.json", lambda p: Path(p).write_text(json.dumps(state)))

    def load(self, path: str | os.PathLike) -> None:
        """Restores what ``save`` wrote; a missing or corrupt file raises naming the path."""
        from safetensors.torch import load_file

        path = Path(path)
        try:
            state = json.loads((path / "learner_state.json").read_text())
            tensors = load_file(str(path / "optimizer.safetensors"))
        except (OSError, ValueError) as error:
            raise ValueError(f"unreadable learner checkpoint at {path}: {error}") from error
        model, _ = load_model(path / "policy", dtype=self.config.dtype, device=self.config.device)
        self.model.load_state_dict(model.state_dict())
        _optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
        self.scheduler.last_epoch = state["scheduler"]["last_epoch"]
        self.scheduler._last_lr = [  # keep get_last_lr() consistent with the restored step
            group["lr"] for group in self.optimizer.param_groups
        ]
        self.num_updates = state["num_updates"]
        torch.set_rng_state(tensors["rng/torch"])
        self.generator.set_state(tensors["rng/generator"])
        random.setstate(_random_state_from_json(state["python_random"]))


def _pad_rows(rows: list[list[float]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.float32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


def _optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, param_state in state["state"].items():
        for name, value in param_state.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"state/{index}/{name}"] = value.detach().to("cpu").contiguous()
    return tensors, {"param_groups": _jsonable(state["param_groups"])}


def _optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("state/"):
            continue
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    param_groups = meta["param_groups"]
    for group in param_groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def _random_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _random_state_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _atomic_write(target: Path, write: Callable[[str], Any]) -> None:
    """Writes through a temporary file in the same folder, then renames it into place."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

