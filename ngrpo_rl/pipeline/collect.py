"""The collect stage: draw problems, sample and score groups of responses, and oversample until
enough groups survive the group filter (DAPO's dynamic sampling), carrying the surplus over.

Nothing here knows Ray or gymnasium: the sampler takes any ``generate(prompts, params)`` (an
in-process backend or a ``GenerationPool``) and any environment with ``prompt(problem)`` and
``score_batch(problems, completions)``, so the whole loop is testable with fakes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import torch

from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.generation.types import GenerationOutput, SamplingParams, derive_seed

logger = logging.getLogger(__name__)

T = TypeVar("T")
Stage = Callable[[TrainingBatch], TrainingBatch]
"""A pipeline stage: one training batch in, one out."""


class ProblemStream(Generic[T]):
    """Yields the dataset in a fresh seeded shuffle each epoch.

    Its position (epoch, index) is part of the algorithm's checkpoint, so a restored run draws the
    same problems a continuous run would have drawn.
    """

    def __init__(self, items: Sequence[T], seed: int = 0) -> None:
        if not items:
            raise ValueError("the training dataset is empty")
        self.items = list(items)
        self.seed = seed
        self.epoch = 0
        self.index = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)
        return order

    def take(self, n: int) -> list[T]:
        """The next ``n`` items, crossing into new epochs as needed."""
        out = []
        while len(out) < n:
            if self.index == len(self._order):
                self.epoch += 1
                self.index = 0
                self._order = self._shuffled(self.epoch)
            out.append(self.items[self._order[self.index]])
            self.index += 1
        return out

    def get_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])
        self._order = self._shuffled(self.epoch)


class ScoringEnv(Protocol):
    """What the sampler needs of an environment (``MathTextEnv`` is one)."""

    def prompt(self, problem: Any) -> str: ...

    def score_batch(self, problems: Sequence[Any], completions: Sequence[str]) -> list[Any]: ...

    # Optional: ``verifier_stats()`` returning counters with ``fast_path``, ``cache_hits`` and
    # ``cache_misses`` (and subtraction); the sampler then reports them per iteration.


Generate = Callable[[list[str], SamplingParams], GenerationOutput]


class Sampler:
    """Generates ``group_size`` responses per problem and scores them with the environment.

    The environment's reward (``Verdict.reward``) becomes both ``scores`` and the unshaped
    ``rewards``: an environment that gives partial credit is trained on as it scores.
    """

    def __init__(
        self,
        generate: Generate,
        env: ScoringEnv,
        *,
        group_size: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> None:
        self.generate = generate
        self.env = env
        self.group_size = group_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, problems: Sequence[Any], seed: int) -> tuple[TrainingBatch, dict[str, float]]:
        """The scored batch of ``len(problems)`` groups and the seconds spent on each part."""
        params = SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            n=self.group_size,
            seed=seed,
        )
        started = time.perf_counter()
        output = self.generate([self.env.prompt(p) for p in problems], params)
        generated = time.perf_counter()
        repeated = [p for p in problems for _ in range(self.group_size)]
        counters = getattr(self.env, "verifier_stats", None)
        before = counters() if counters is not None else None
        verdicts = self.env.score_batch(repeated, output.texts)
        scored = time.perf_counter()
        scores = torch.tensor([float(v.reward) for v in verdicts], dtype=torch.float32)
        batch = TrainingBatch(
            problem_ids=[p.id for p in repeated],
            golds=[p.answer for p in repeated],
            prompt_token_ids=output.prompt_token_ids,
            response_token_ids=output.response_token_ids,
            old_logprobs=output.response_logprobs,
            texts=output.texts,
            truncated=output.truncated,
            correct=torch.tensor([bool(v.correct) for v in verdicts], dtype=torch.bool),
            scores=scores,
            rewards=scores.clone(),
            reasons=[v.reason for v in verdicts],
            group_size=self.group_size,
        )
        spent = {"timers/generate": generated - started, "timers/score": scored - generated}
        if before is not None:
            counts = counters() - before
            spent.update({
                "verifier/fast_path": float(counts.fast_path),
                "verifier/memo_hits": float(counts.cache_hits),
                "verifier/comparisons": float(counts.cache_misses),
            })
        return batch, spent


@dataclass
class Collected:
    """What one collection produced.

    Attributes:
        batch: the groups to train on (at most ``prompts_per_step``), rewards shaped.
        sampled: every group sampled this iteration, before the filter (for the group metrics).
        rounds: generation rounds it took.
        timers: seconds generating and scoring, summed over rounds.
        carried_over: surplus kept groups held for the next collection.
    """

    batch: TrainingBatch
    sampled: TrainingBatch
    rounds: int
    timers: dict[str, float] = field(default_factory=dict)
    carried_over: int = 0


class Collector:
    """Oversamples prompts until ``prompts_per_step`` groups survive the filter.

    Each round draws ``prompts_per_step`` problems, samples and scores them, shapes the rewards
    and filters the groups. Kept groups beyond ``prompts_per_step`` carry over to the next
    collection; after ``max_sampling_rounds`` rounds it trains on what it has, with a warning.

    Args:
        sample: ``sample(problems, seed) -> (batch, timers)``, e.g. a ``Sampler``.
        problems: the training problems.
        prompts_per_step: groups per collection.
        max_sampling_rounds: the most rounds per collection.
        shape: the reward-shaping stage.
        filter_groups: the group-filter stage (returns the kept groups).
        seed: the run's seed; round seeds derive from it, the iteration and the stream position.
    """

    def __init__(
        self,
        sample: Callable[[Sequence[Any], int], tuple[TrainingBatch, dict[str, float]]],
        problems: ProblemStream,
        *,
        prompts_per_step: int,
        max_sampling_rounds: int,
        shape: Stage,
        filter_groups: Stage,
        seed: int = 0,
    ) -> None:
        self.sample = sample
        self.problems = problems
        self.prompts_per_step = prompts_per_step
        self.max_sampling_rounds = max_sampling_rounds
        self.shape = shape
        self.filter_groups = filter_groups
        self.seed = seed
        self.carry_over: TrainingBatch | None = None

    def get_state(self) -> dict[str, Any]:
        """The surplus groups waiting for the next collection (part of an exact resume)."""
        return {"carry_over": self.carry_over.to_state() if self.carry_over is not None else None}

    def set_state(self, state: dict[str, Any]) -> None:
        carried = state.get("carry_over")
        self.carry_over = TrainingBatch.from_state(carried) if carried is not None else None

    def collect(self, iteration: int) -> Collected:
        """The groups for iteration ``iteration`` (which, with the stream position, seeds sampling)."""
        kept = [self.carry_over] if self.carry_over is not None else []
        sampled: list[TrainingBatch] = []
        timers: dict[str, float] = {"timers/generate": 0.0, "timers/score": 0.0}
        rounds = 0
        while sum(b.num_groups for b in kept) < self.prompts_per_step:
            if rounds == self.max_sampling_rounds:
                logger.warning(
                    "the group filter kept %d of %d groups after max_sampling_rounds=%d; training "
                    "on fewer groups this iteration (raise max_sampling_rounds or prompts_per_step)",
                    sum(b.num_groups for b in kept), self.prompts_per_step, rounds,
                )
                break
            problems = self.problems.take(self.prompts_per_step)
            # The stream position after the draw names the round: distinct across rounds and runs.
            seed = derive_seed(derive_seed(self.seed, iteration), self.problems.index)
            batch, spent = self.sample(problems, seed)
            for key, seconds in spent.items():
                timers[key] = timers.get(key, 0.0) + seconds
            batch = self.shape(batch)
            sampled.append(batch)
            kept.append(self.filter_groups(batch))
            rounds += 1

        # kept holds at least the first round's (maybe empty) filtered batch or the carry-over.
        pool = TrainingBatch.concat(kept)
        batch, surplus = pool.split_groups(min(pool.num_groups, self.prompts_per_step))
        self.carry_over = surplus if surplus.num_groups else None
        every = TrainingBatch.concat(sampled) if sampled else TrainingBatch.empty(pool.group_size)
        return Collected(batch, every, rounds, timers, surplus.num_groups)


__all__ = ["Collected", "Collector", "ProblemStream", "Sampler", "ScoringEnv", "Stage"]
