"""Generating the next batch while the learner trains on this one (``overlap_generation=True``).

Once iteration t's groups are collected, iteration t+1's collection (draw, generate, score, shape,
filter) starts in a background thread and runs while the learner annotates and updates on t's.
The new weights reach generation only after that collection is done, so iteration t+1 trains on
responses sampled from the policy before t's update: one step off policy. The update stays correct
because the policy loss weighs every token by the importance ratio against the sampler's own
log-probs (``old_logp``), which the clip bounds; ``ratio/first_step_*`` show how far off the batch
was. This is verl's one-step-off-policy recipe and PipelineRL's idea, with a lag of exactly one.

What overlaps is the learner's compute with generation's; on a CPU both compete for the same cores,
so the gain needs generation on its own device or actor (``num_generation_workers >= 1``).

Everything the background collection touches (the collector, its problem stream, the generation
backend) is touched by nobody else until :meth:`Prefetcher.wait` returns: the algorithm waits
before it syncs weights, evaluates or checkpoints. A checkpoint holds the collected next batch, so a
resumed run trains on exactly the batch the uninterrupted run would have.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.pipeline.collect import Collected, Collector


class Prefetcher:
    """Runs a :class:`Collector` one iteration ahead in a background thread.

    Args:
        collector: the collector to run ahead; only this object calls it from now on.
    """

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self._executor: ThreadPoolExecutor | None = None
        self._pending: tuple[int, Future[Collected]] | None = None

    def collect(self, iteration: int) -> tuple[Collected, bool]:
        """Iteration ``iteration``'s groups and whether they were collected ahead (off policy)."""
        if self._pending is not None:
            ahead, future = self._pending
            self._pending = None
            collected = future.result()
            if ahead == iteration:
                return collected, True
            raise RuntimeError(
                f"the prefetched batch is for iteration {ahead}, but iteration {iteration} asked for one; "
                f"iterations must run in order when overlap_generation is on"
            )
        return self.collector.collect(iteration), False

    def start(self, iteration: int) -> None:
        """Starts collecting iteration ``iteration``'s groups in the background."""
        if self._pending is not None:
            raise RuntimeError(f"iteration {self._pending[0]}'s batch is still being collected")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ngrpo-prefetch")
        self._pending = (iteration, self._executor.submit(self.collector.collect, iteration))

    def wait(self) -> float:
        """Blocks until the background collection (if any) is done; returns the seconds waited.
        Its batch stays pending for :meth:`collect`; an error in it is raised here."""
        if self._pending is None:
            return 0.0
        started = time.perf_counter()
        self._pending[1].result()
        return time.perf_counter() - started

    def get_state(self) -> dict[str, Any]:
        """The collector's state after the background collection, with that collection's result."""
        self.wait()
        state = self.collector.get_state()
        if self._pending is not None:
            ahead, future = self._pending
            collected = future.result()
            state["prefetched"] = {
                "iteration": ahead,
                "batch": collected.batch.to_state(),
                "sampled": collected.sampled.to_state(),
                "rounds": collected.rounds,
                "timers": dict(collected.timers),
                "carried_over": collected.carried_over,
            }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`get_state` returned; a saved next batch becomes the pending one."""
        self.wait()
        self._pending = None
        self.collector.set_state(state)
        saved = state.get("prefetched")
        if saved is not None:
            future: Future[Collected] = Future()
            future.set_result(Collected(
                TrainingBatch.from_state(saved["batch"]), TrainingBatch.from_state(saved["sampled"]),
                saved["rounds"], dict(saved["timers"]), saved["carried_over"],
            ))
            self._pending = (saved["iteration"], future)

    def close(self) -> None:
        """Waits for the background collection and stops the thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


__all__ = ["Prefetcher"]
