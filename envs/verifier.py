"""The reward verifier: is a completion's final answer equal to the gold answer?

``score(completions, golds)`` returns 1.0 or 0.0 per pair; ``verify_batch`` returns a ``Verdict``
per pair with the extracted answer and the reason. For each pair:

1. the final answer is extracted (``extraction``: last ``\\boxed{}``, else ``#### N``, else the last
   number); none found gives reason ``"no_answer"``;
2. the fast path (``fast_match``) decides exact and plain-number comparisons in this process;
3. the rest go to math-verify in worker processes (``process_pool``), with the gold wrapped in
   ``$...$`` and parsed once per distinct gold per worker, identical pairs of a batch compared
   once, and an outer deadline per comparison: past it (or if the worker crashes) the answer scores
   0 with reason ``"timeout"``, and the stuck worker is replaced.

math-verify's verdicts are memoised per (gold, extracted answer) in a bounded LRU (``cache_size``
entries, across calls: RL meets the same problem's answers again at every epoch, and a group's G
samples often share an answer), so a pair is sent to the workers once. Only finished comparisons
are memoised, never a timeout or a crashed worker: those say the machine was busy or the answer
slow, not what the answer is, and the pair is compared afresh the next time it comes (each time
under the deadline, so a pathological answer costs at most the deadline per batch it appears in).
An exception inside math-verify (scored wrong, counted in ``worker_errors``) is not memoised
either. A memoised verdict is the ``Verdict`` the comparison gave, so results never depend on the
memo; ``stats.cache_hits`` / ``stats.cache_misses`` count the answers served from it (or from an
identical pair earlier in the same batch) and the comparisons run.

This works from the main thread and from any other thread (math-verify's own SIGALRM timeouts would
fail off the main thread; here they only ever run on a worker's main thread). Model output is never
evaluated as code.

The module-level ``score`` and ``verify_batch`` use one shared ``Verifier``, created on first use
with defaults; ``configure_verifier(num_workers=..., timeout=..., cache_size=...)`` replaces it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
from typing import Literal, Optional, Sequence

from ngrpo_rl.envs import math_verify_worker
from ngrpo_rl.envs.extraction import DEFAULT_STRATEGY, answer_extractors, extract_answer
from ngrpo_rl.envs.fast_match import fast_match
from ngrpo_rl.envs.process_pool import DeadlinePool

Reason = Literal["correct", "no_answer", "wrong", "timeout"]
Method = Literal["none", "too_long", "exact", "numeric", "math_verify"]

DEFAULT_TIMEOUT = 5.0
"""Seconds math-verify may spend on one answer before it scores 0 as a timeout."""

DEFAULT_CACHE_SIZE = 65536
"""math-verify verdicts the verifier memoises: an entry holds the gold and the extracted answer, so
this many take a few MB for typical answers (at most ``max_answer_chars`` each)."""


def default_num_workers() -> int:
    """Worker processes for math-verify by default: the core count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The judgement of one completion.

    Attributes:
        correct: whether the extracted answer equals the gold answer.
        extracted: the final answer found in the completion, or None.
        reason: ``"correct"``, ``"no_answer"`` (nothing extracted), ``"wrong"``, or ``"timeout"``
            (math-verify ran past the deadline or its worker crashed; scored 0).
        method: what decided: ``"none"`` (no answer), ``"too_long"`` (the extracted answer exceeds
            ``max_answer_chars``), ``"exact"`` / ``"numeric"`` (fast path) or ``"math_verify"``.
    """

    correct: bool
    extracted: Optional[str]
    reason: Reason
    method: Method

    @property
    def reward(self) -> float:
        """1.0 if correct, else 0.0."""
        return 1.0 if self.correct else 0.0


@dataclasses.dataclass
class VerifierStats:
    """Counters over a verifier's lifetime (``answers`` = all verdicts given).

    ``math_verify`` counts the answers the fast path left to math-verify; each was either a
    ``cache_hits`` (its verdict came from the memo, or from an identical pair earlier in the same
    batch) or a ``cache_misses`` (a comparison ran in a worker), so the two add up to it.
    """

    answers: int = 0
    no_answer: int = 0
    fast_path: int = 0
    math_verify: int = 0
    timeouts: int = 0
    worker_errors: int = 0
    cache_hits: int = 0
    cache_misses: int = 0

    def snapshot(self) -> "VerifierStats":
        """A copy (the verifier keeps counting into the original)."""
        return dataclasses.replace(self)

    def __sub__(self, other: "VerifierStats") -> "VerifierStats":
        """The counts since ``other`` (an earlier ``snapshot``)."""
        return VerifierStats(
            **{
                field.name: getattr(self, field.name) - getattr(other, field.name)
                for field in dataclasses.fields(self)
            }
        )

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return dataclasses.asdict(self)


class Verifier:
    """Scores completions against gold answers; owns the math-verify worker pool.

    Args:
        num_workers: math-verify worker processes (default: cores, at most 4); started lazily on
            the first answer the fast path cannot decide, then reused.
        timeout: default deadline in seconds for one math-verify comparison.
        strategy: default answer extraction strategy (see ``extraction.answer_extractors``).
        max_answer_chars: extracted answers longer than this are judged wrong without math-verify.
        memory_limit_mb: address-space limit of each worker (None: unlimited).
        cache_size: math-verify verdicts memoised, least recently used dropped first (0: none).
    """

    def __init__(
        self,
        *,
        num_workers: Optional[int] = None,
        timeout: float = DEFAULT_TIMEOUT,
        strategy: str = DEFAULT_STRATEGY,
        max_answer_chars: int = 1000,
        memory_limit_mb: Optional[int] = 4096,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive (seconds), got {timeout}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be 0 (no memo) or more, got {cache_size}")
        answer_extractors.get(strategy)  # fails early, listing the valid strategies
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        self.timeout = timeout
        self.strategy = strategy
        self.max_answer_chars = max_answer_chars
        self.memory_limit_mb = memory_limit_mb
        self.cache_size = cache_size
        self.stats = VerifierStats()
        self._stats_lock = threading.Lock()
        # (gold as sent to math-verify, extracted answer) -> "correct" or "wrong"
        self._memo: collections.OrderedDict[tuple[str, str], Reason] = collections.OrderedDict()
        self._memo_lock = threading.Lock()
        self._pool: Optional[DeadlinePool] = None
        self._pool_lock = threading.Lock()

    @property
    def pool(self) -> DeadlinePool:
        """The worker pool (created on first access; its processes start on first use)."""
        with self._pool_lock:
            if self._pool is not None and self._pool.owner_pid != os.getpid():
                self._pool = None  # a forked copy of this verifier: the workers are the parent's
            if self._pool is None:
                self._pool = DeadlinePool(
                    self.num_workers,
                    preload=[math_verify_worker.__name__],
                    memory_limit_mb=self.memory_limit_mb,
                )
            return self._pool

    def verify_batch(
        self,
        completions: Sequence[str],
        golds: Sequence[str],
        *,
        timeout: Optional[float] = None,
        strategy: Optional[str] = None,
    ) -> list[Verdict]:
        """One ``Verdict`` per (completion, gold) pair, in order.

        Args:
            completions: model outputs (any text; the final answer is extracted from it).
            golds: gold answers as strings (a number or LaTeX, without ``$``).
            timeout: deadline in seconds per math-verify comparison (default: the verifier's).
            strategy: answer extraction strategy (default: the verifier's).
        """
        if isinstance(completions, str) or isinstance(golds, str):
            raise TypeError("completions and golds must be sequences of strings, not one string")
        if len(completions) != len(golds):
            raise ValueError(
                f"got {len(completions)} completions but {len(golds)} gold answers; "
                "pass one gold per completion"
            )
        timeout = self.timeout if timeout is None else timeout
        if timeout <= 0:
            raise ValueError(f"timeout must be positive (seconds), got {timeout}")
        strategy = self.strategy if strategy is None else strategy

        verdicts: list[Optional[Verdict]] = [None] * len(completions)
        slow: dict[tuple[str, str], list[int]] = {}  # (gold, answer) -> positions, compared once
        for position, (completion, gold) in enumerate(zip(completions, golds)):
            if not isinstance(gold, str):
                raise TypeError(
                    f"gold answers must be str, got {type(gold).__name__} at position {position}"
                )
            extracted = extract_answer(completion, strategy)
            if extracted is None:
                verdicts[position] = Verdict(False, None, "no_answer", "none")
            elif len(extracted) > self.max_answer_chars:
                verdicts[position] = Verdict(False, extracted, "wrong", "too_long")
            else:
                decided, method = fast_match(extracted, gold)
                if decided is None:
                    slow.setdefault((gold.strip().strip("$"), extracted), []).append(position)
                else:
                    reason: Reason = "correct" if decided else "wrong"
                    verdicts[position] = Verdict(decided, extracted, reason, method)  # type: ignore

        worker_errors = 0
        hits = sum(len(positions) for positions in slow.values()) - len(slow)  # batch duplicates
        for pair, reason in self._recall(slow).items():
            hits += 1
            verdict = Verdict(reason == "correct", pair[1], reason, "math_verify")
            for position in slow.pop(pair):
                verdicts[position] = verdict
        if slow:
            seconds = 0.9 * timeout  # the worker's own timer fires first where it can
            tasks = [(gold, answer, seconds) for gold, answer in slow]
            results = self.pool.map(math_verify_worker.compare, tasks, deadline=timeout)
            finished: dict[tuple[str, str], Reason] = {}
            for pair, positions, result in zip(slow, slow.values(), results):
                if result.status == "ok" and result.value in ("correct", "wrong", "timeout"):
                    reason = result.value
                    if reason != "timeout":
                        finished[pair] = reason
                elif result.status in ("timeout", "crashed"):
                    reason = "timeout"
                else:  # an exception escaped math-verify: no match can be shown
                    reason = "wrong"
                    worker_errors += 1
                verdict = Verdict(reason == "correct", pair[1], reason, "math_verify")
                for position in positions:
                    verdicts[position] = verdict
            self._remember(finished)

        final = [verdict for verdict in verdicts if verdict is not None]
        assert len(final) == len(verdicts)
        self._count(final, worker_errors, hits, len(slow))
        return final

    def score(
        self,
        completions: Sequence[str],
        golds: Sequence[str],
        *,
        timeout: Optional[float] = None,
        strategy: Optional[str] = None,
    ) -> list[float]:
        """1.0 for each correct completion, 0.0 otherwise (see ``verify_batch``)."""
        return [
            v.reward
            for v in self.verify_batch(completions, golds, timeout=timeout, strategy=strategy)
        ]

    @property
    def timeouts(self) -> int:
        """How many answers scored 0 because math-verify ran past the deadline or crashed."""
        return self.stats.timeouts

    def close(self) -> None:
        """Stops the worker processes (a later call starts new ones)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def clear_cache(self) -> None:
        """Forgets the memoised math-verify verdicts (the counters stay)."""
        with self._memo_lock:
            self._memo.clear()

    def _recall(self, pairs: dict[tuple[str, str], list[int]]) -> dict[tuple[str, str], Reason]:
        """The memoised verdicts of those pairs that have one (each marked recently used)."""
        if not self.cache_size:
            return {}
        known: dict[tuple[str, str], Reason] = {}
        with self._memo_lock:
            for pair in pairs:
                reason = self._memo.get(pair)
                if reason is not None:
                    self._memo.move_to_end(pair)
                    known[pair] = reason
        return known

    def _remember(self, finished: dict[tuple[str, str], Reason]) -> None:
        if not self.cache_size or not finished:
            return
        with self._memo_lock:
            self._memo.update(finished)
            for pair in finished:
                self._memo.move_to_end(pair)  # update() keeps a known key where it was
            while len(self._memo) > self.cache_size:
                self._memo.popitem(last=False)

    def _count(
        self, verdicts: list[Verdict], worker_errors: int, cache_hits: int, cache_misses: int
    ) -> None:
        with self._stats_lock:
            self.stats.answers += len(verdicts)
            self.stats.worker_errors += worker_errors
            self.stats.cache_hits += cache_hits
            self.stats.cache_misses += cache_misses
            for verdict in verdicts:
                if verdict.method == "none":
                    self.stats.no_answer += 1
                elif verdict.method in ("exact", "numeric", "too_long"):
                    self.stats.fast_path += 1
                else:
                    self.stats.math_verify += 1
                    self.stats.timeouts += verdict.reason == "timeout"


_default: Optional[Verifier] = None
_default_lock = threading.Lock()


def get_verifier() -> Verifier:
    """The shared verifier behind ``score`` and ``verify_batch`` (made on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Verifier()
        return _default


def configure_verifier(
    *,
    num_workers: Optional[int] = None,
    timeout: float = DEFAULT_TIMEOUT,
    strategy: str = DEFAULT_STRATEGY,
    max_answer_chars: int = 1000,
    memory_limit_mb: Optional[int] = 4096,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> Verifier:
    """Replaces the shared verifier by one with these settings (see ``Verifier``) and returns it."""
    global _default
    verifier = Verifier(
        num_workers=num_workers,
        timeout=timeout,
        strategy=strategy,
        max_answer_chars=max_answer_chars,
        memory_limit_mb=memory_limit_mb,
        cache_size=cache_size,
    )
    with _default_lock:
        previous, _default = _default, verifier
    if previous is not None:
        previous.close()
    return verifier


def verify_batch(
    completions: Sequence[str],
    golds: Sequence[str],
    *,
    timeout: Optional[float] = None,
    strategy: Optional[str] = None,
) -> list[Verdict]:
    """One ``Verdict`` (correct, extracted, reason, method) per pair, by the shared verifier.

    ``timeout``: seconds math-verify may spend on one answer (default ``DEFAULT_TIMEOUT``, or what
    ``configure_verifier`` set); ``strategy``: answer extraction strategy (default ``"auto"``).
    """
    return get_verifier().verify_batch(completions, golds, timeout=timeout, strategy=strategy)


def score(
    completions: Sequence[str],
    golds: Sequence[str],
    *,
    timeout: Optional[float] = None,
    strategy: Optional[str] = None,
) -> list[float]:
    """Rewards for (completion, gold) pairs: 1.0 correct, 0.0 not (no answer, wrong or timeout)."""
    return get_verifier().score(completions, golds, timeout=timeout, strategy=strategy)


def timeout_count() -> int:
    """Answers the shared verifier has scored 0 because of the deadline (or a worker crash)."""
    return get_verifier().timeouts
