"""``TrainingPipeline``: one training iteration, DESIGN.md section 4 steps 1-5, without Ray.

    collect (sample, score, shape, filter; oversample and carry over)
      -> annotate (reference log-probs, critic values)
      -> token rewards (token-level estimators only)
      -> estimate advantages
      -> drop zero-advantage samples (PSR / NSR)
      -> learn

The RLlib algorithms own one of these and add what belongs to a shell: workers, weight sync,
evaluation, checkpoints and reporting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ngrpo_rl import advantages
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.pipeline.collect import (
    Collector,
    Generate,
    ProblemStream,
    Sampler,
    ScoringEnv,
    Stage,
)
from ngrpo_rl.pipeline.prefetch import Prefetcher
from ngrpo_rl.pipeline.shaping import shape_rewards
from ngrpo_rl.pipeline.stages import (
    advantage_metrics,
    drop_zero_advantage_stage,
    estimate_stage,
    filter_stage,
    sampling_metrics,
    token_rewards_stage,
)
from ngrpo_rl.settings import Settings

logger = logging.getLogger(__name__)


class TrainingPipeline:
    """The stages of one iteration, composed.

    Args:
        collector: draws, samples, shapes and filters groups.
        learner: the ``Learner`` (its ``annotate`` and ``update`` are the last stages).
        estimate: the advantage stage.
        before_estimate: stages between annotate and estimate (token rewards for GAE).
        after_estimate: stages between estimate and learn (dropping samples for PSR / NSR).
        max_timeout_frac: above this fraction of verifier timeouts among the responses to train
            on, the update is skipped (their zeros say nothing about the answers).
        overlap_generation: collect the next iteration's groups in the background while this one
            learns (``ngrpo_rl.pipeline.prefetch``); call :meth:`wait` before touching the
            generation backend (weight sync, evaluation).
    """

    def __init__(
        self,
        collector: Collector,
        learner: Any,
        estimate: Stage,
        before_estimate: Sequence[Stage] = (),
        after_estimate: Sequence[Stage] = (),
        max_timeout_frac: float = 1.0,
        overlap_generation: bool = False,
    ) -> None:
        self.collector = collector
        self.prefetcher = Prefetcher(collector) if overlap_generation else None
        self.max_timeout_frac = max_timeout_frac
        self.learner = learner
        self.estimate = estimate
        self.before_estimate = list(before_estimate)
        self.after_estimate = list(after_estimate)

    def step(self, iteration: int) -> tuple[TrainingBatch, dict[str, float]]:
        """Runs one iteration; returns the batch the learner saw and the iteration's metrics."""
        if self.prefetcher is not None:
            collected, ahead = self.prefetcher.collect(iteration)
            self.prefetcher.start(iteration + 1)
        else:
            collected, ahead = self.collector.collect(iteration), False
        metrics = sampling_metrics(collected)
        metrics["generation/off_policy"] = float(ahead)
        batch = collected.batch
        if not len(batch):
            logger.warning("no group survived the group filter this iteration; skipping the update")
            return batch, metrics
        timeout_frac = batch.reasons.count("timeout") / len(batch)
        metrics["verifier/timeout_frac"] = timeout_frac
        metrics["verifier/update_skipped"] = float(timeout_frac > self.max_timeout_frac)
        if timeout_frac > self.max_timeout_frac:
            logger.warning(
                "%.0f%% of this iteration's responses timed out in the verifier (max_verifier_timeout_frac"
                "=%g): their rewards are not verdicts, so the update is skipped", 100 * timeout_frac,
                self.max_timeout_frac,
            )
            return batch, metrics
        batch = self.learner.annotate(batch)
        for stage in self.before_estimate:
            batch = stage(batch)
        batch = self.estimate(batch)
        metrics.update(advantage_metrics(batch))
        for stage in self.after_estimate:
            batch = stage(batch)
        if not len(batch):
            logger.warning("no sample is left to train on this iteration; skipping the update")
            return batch, metrics
        metrics.update(self.learner.update(batch))
        return batch, metrics

    def wait(self) -> float:
        """Waits for a background collection to finish (none: returns at once); the seconds waited."""
        return self.prefetcher.wait() if self.prefetcher is not None else 0.0

    def get_state(self) -> dict[str, Any]:
        """What an exact resume needs: the carried-over groups, and a collected next batch."""
        source = self.prefetcher if self.prefetcher is not None else self.collector
        return source.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        target = self.prefetcher if self.prefetcher is not None else self.collector
        target.set_state(state)

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()


def build_pipeline(
    settings: Settings,
    *,
    generate: Generate,
    env: ScoringEnv,
    problems: ProblemStream,
    learner: Any,
) -> TrainingPipeline:
    """The pipeline ``settings`` describe, around a generator, an environment and a learner.
    Each chosen component receives the keyword arguments it declared
    (``settings.component_params(kind, name)``)."""
    params = settings.component_params
    sampler = Sampler(
        generate,
        env,
        group_size=settings.group_size,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
    )
    shapers = tuple(settings.reward_shaping)
    shaper_params = {name: params("reward_shaping", name) for name in shapers}
    collector = Collector(
        sampler,
        problems,
        prompts_per_step=settings.prompts_per_step,
        max_sampling_rounds=settings.max_sampling_rounds,
        shape=lambda batch: shape_rewards(batch, shapers, shaper_params),
        filter_groups=filter_stage(settings.group_filter, params("group_filter", settings.group_filter)),
        seed=settings.seed,
    )
    name = settings.advantage_estimator
    before = []
    if advantages.is_token_level(name):
        before.append(
            token_rewards_stage(
                kl_coef=settings.kl_coef if settings.kl_in_reward else 0.0,
                kl_estimator=settings.kl_estimator,
            )
        )
    after = [drop_zero_advantage_stage()] if settings.drops_zero_advantage_samples() else []
    return TrainingPipeline(
        collector,
        learner,
        estimate_stage(name, params("advantage_estimator", name)),
        before_estimate=before,
        after_estimate=after,
        max_timeout_frac=settings.max_verifier_timeout_frac,
        overlap_generation=settings.overlap_generation,
    )


__all__ = ["TrainingPipeline", "build_pipeline"]
