"""The verifier: fast path, math-verify in worker processes, deadlines, threads, crashes."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import ngrpo_rl.envs
import pytest
from ngrpo_rl.envs import Verdict, Verifier, score, verify_batch
from ngrpo_rl.envs.process_pool import DeadlinePool, ItemResult
from ngrpo_rl.envs.verifier import DEFAULT_CACHE_SIZE

DEADLINE = 1.5  # seconds per math-verify answer in these tests

PATHOLOGICAL = [
    "\\boxed{9^{9^{9^9}}}",  # a tower sympy would try to evaluate
    "x" * 100_000,  # 100 kB of text
    "7 " * 50_000,  # 100 kB of numbers
    "\\boxed{\\frac{1}{2" + "{" * 5_000 + "}",  # unbalanced braces
    "\\boxed{\\frac{}{}\\sqrt[}{\\begin{matrix}}",  # invalid LaTeX
    "\\boxed{" + "\\left(" * 2_000 + "}",  # deeply nested invalid LaTeX
    "",  # empty
]


def symbolic_pairs(k: int, copies: int = 1) -> tuple[list[str], list[str]]:
    """A correct answer only math-verify can judge, different for each ``k`` (the memo would
    otherwise answer a pair a test reuses without asking the workers)."""
    return [f"\\boxed{{\\frac{{{2 * k}\\pi}}{{2}}}}"] * copies, [f"{k}\\pi"] * copies


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    verifier = Verifier(num_workers=2, timeout=DEADLINE)
    yield verifier
    verifier.close()


def test_score_is_exported_and_returns_floats() -> None:
    assert ngrpo_rl.envs.score is score
    rewards = score(["19", "the answer is \\boxed{20}", ""], ["19", "19", "19"])
    assert rewards == [1.0, 0.0, 0.0]
    assert all(isinstance(reward, float) for reward in rewards)


def test_verdicts_carry_extracted_answer_reason_and_method(verifier: Verifier) -> None:
    verdicts = verifier.verify_batch(
        [
            "so \\boxed{025}",
            "#### 1,234",
            "no idea",
            "\\boxed{26}",
            "\\boxed{\\frac{2\\pi}{4}}",
        ],
        ["25", "1234", "3", "27.0", "\\frac{\\pi}{2}"],
    )
    assert verdicts[0] == Verdict(True, "025", "correct", "numeric")
    assert verdicts[1] == Verdict(True, "1234", "correct", "exact")
    assert verdicts[2] == Verdict(False, None, "no_answer", "none")
    assert verdicts[3] == Verdict(False, "26", "wrong", "numeric")
    assert verdicts[4] == Verdict(True, "\\frac{2\\pi}{4}", "correct", "math_verify")
    assert [v.reward for v in verdicts] == [1.0, 1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "completion, gold, correct",
    [
        ("\\boxed{\\frac{\\sqrt{3}}{3}}", "\\frac{1}{\\sqrt{3}}", True),
        ("\\boxed{(1, 2]}", "(1,2]", True),
        ("\\boxed{x = 5}", "5", True),
        ("\\boxed{\\sqrt{3}}", "\\frac{\\sqrt{2}}{2}", False),
        (
            "\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}",
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            True,
        ),
        (
            "\\boxed{\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}}",
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            False,
        ),
        ("\\boxed{336}", "336^\\circ", True),
        ("\\boxed{\\frac{1}{3}}", "0.333333", True),
    ],
)
def test_latex_answers_are_compared_by_math_verify(
    verifier: Verifier, completion: str, gold: str, correct: bool
) -> None:
    assert verifier.verify_batch([completion], [gold])[0].correct is correct


def test_model_output_is_never_evaluated(verifier: Verifier, tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    payload = f"__import__('os').system('touch {marker}')"
    verdicts = verifier.verify_batch([f"\\boxed{{{payload}}}", payload], ["12345", "12345"])
    assert not marker.exists()
    assert not any(v.correct for v in verdicts)


def test_bad_arguments_are_refused_with_the_fix(verifier: Verifier) -> None:
    with pytest.raises(ValueError, match="one gold per completion"):
        verifier.verify_batch(["1", "2"], ["1"])
    with pytest.raises(TypeError, match="sequences of strings"):
        verifier.verify_batch("1", "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="gold answers must be str"):
        verifier.verify_batch(["1"], [1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="timeout must be positive"):
        verifier.verify_batch(["1"], ["1"], timeout=0)


def _score_pathological(verifier: Verifier) -> tuple[list[float], float]:
    start = time.perf_counter()
    rewards = verifier.score(PATHOLOGICAL, ["5"] * len(PATHOLOGICAL))
    return rewards, time.perf_counter() - start


def _bound(verifier: Verifier) -> float:
    # Each answer gets at most DEADLINE; the workers share the slow ones; plus start-up slack.
    slow = 3
    return DEADLINE * -(-slow // verifier.num_workers) + 10.0


def test_pathological_answers_score_zero_within_the_deadline(verifier: Verifier) -> None:
    timeouts_before = verifier.timeouts
    rewards, elapsed = _score_pathological(verifier)
    assert rewards == [0.0] * len(PATHOLOGICAL)
    assert elapsed < _bound(verifier)
    assert verifier.timeouts > timeouts_before  # the tower ran out of time and was counted


def test_pathological_answers_score_zero_from_a_thread(verifier: Verifier) -> None:
    outcome: list[tuple[list[float], float]] = []
    thread = threading.Thread(target=lambda: outcome.append(_score_pathological(verifier)))
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    rewards, elapsed = outcome[0]
    assert rewards == [0.0] * len(PATHOLOGICAL)
    assert elapsed < _bound(verifier)


def test_concurrent_calls_from_threads_agree_with_a_serial_call(verifier: Verifier) -> None:
    completions = ["\\boxed{\\frac{2}{4}}", "\\boxed{\\sqrt{4}}", "\\boxed{x^2}", "7"] * 5
    golds = ["\\frac{1}{2}", "2", "x^{2}", "8"] * 5
    expected = verifier.score(completions, golds)
    results: list[list[float]] = [[] for _ in range(4)]

    def work(slot: int) -> None:
        results[slot] = verifier.score(completions, golds)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert expected == [1.0, 1.0, 1.0, 0.0] * 5
    assert results == [expected] * 4


def test_identical_pairs_in_a_batch_are_compared_once(verifier: Verifier) -> None:
    before = verifier.pool.stats.items
    verifier.verify_batch(*symbolic_pairs(16, 16))
    assert verifier.pool.stats.items - before == 1


def test_stats_count_paths_and_module_functions_use_the_shared_verifier() -> None:
    shared = ngrpo_rl.envs.get_verifier()
    before = dataclass_copy(shared.stats)
    completions, golds = symbolic_pairs(17)
    verify_batch(["1", ""] + completions, ["1", "1"] + golds)
    after = shared.stats
    assert after.answers - before.answers == 3
    assert after.no_answer - before.no_answer == 1
    assert after.fast_path - before.fast_path == 1
    assert after.math_verify - before.math_verify == 1
    assert ngrpo_rl.envs.timeout_count() == after.timeouts


def dataclass_copy(stats: ngrpo_rl.envs.VerifierStats) -> ngrpo_rl.envs.VerifierStats:
    return ngrpo_rl.envs.VerifierStats(**vars(stats))


def test_configure_verifier_replaces_the_shared_one() -> None:
    try:
        configured = ngrpo_rl.envs.configure_verifier(num_workers=1, timeout=2.0)
        assert ngrpo_rl.envs.get_verifier() is configured
        assert (configured.num_workers, configured.timeout) == (1, 2.0)
        assert score(["\\boxed{\\frac{4}{8}}"], ["0.5"]) == [1.0]
    finally:
        ngrpo_rl.envs.configure_verifier()


def test_verifier_can_be_closed_and_used_again() -> None:
    verifier = Verifier(num_workers=1, cache_size=0)
    assert verifier.score(*symbolic_pairs(18)) == [1.0]
    verifier.close()
    assert verifier.score(*symbolic_pairs(18)) == [1.0]
    assert verifier.pool.stats.workers_started == 1  # a new pool, its worker started again
    verifier.close()


# -- the worker pool itself -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[DeadlinePool]:
    with DeadlinePool(2) as pool:
        yield pool


def test_pool_kills_a_stuck_worker_and_finishes_the_rest(pool: DeadlinePool) -> None:
    started = pool.stats.workers_started
    start = time.perf_counter()
    results = pool.map(time.sleep, [0, 30, 0, 0.01, 30, 0], deadline=0.5)
    assert [r.status for r in results] == ["ok", "timeout", "ok", "ok", "timeout", "ok"]
    assert time.perf_counter() - start < 15
    assert pool.stats.workers_started >= started + 2  # both stuck workers were replaced
    assert [r.value for r in pool.map(abs, [-1, -2], deadline=5)] == [1, 2]  # still serving


def test_pool_survives_a_crashed_worker_and_reports_errors(pool: DeadlinePool) -> None:
    results = pool.map(os._exit, [3], deadline=5)
    assert results[0].status == "crashed"
    results = pool.map(int, ["12", "not a number"], deadline=5)
    assert results[0].status == "ok" and results[0].value == 12
    assert results[1].status == "error" and "ValueError" in results[1].value


def test_pool_keeps_order_over_many_small_items(pool: DeadlinePool) -> None:
    items = list(range(-2000, 2000))
    assert [r.value for r in pool.map(abs, items, deadline=5)] == [abs(i) for i in items]


def test_closed_pool_refuses_work() -> None:
    pool = DeadlinePool(1)
    assert pool.map(abs, [-1], deadline=5)[0].value == 1
    pool.close()
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.map(abs, [-1], deadline=5)


def test_a_worker_killed_while_idle_costs_no_item(pool: DeadlinePool) -> None:
    pool.map(abs, [-1, -2, -3, -4], deadline=5)  # all workers started and idle
    victim = pool._workers[0].process  # white box: kill one from outside
    victim.kill()
    victim.wait(5)
    results = pool.map(abs, list(range(-40, 0)), deadline=5)
    assert [r.status for r in results] == ["ok"] * 40


def test_a_forked_process_gets_its_own_workers(verifier: Verifier) -> None:
    assert verifier.score(*symbolic_pairs(19)) == [1.0]  # the parent's workers run
    started = verifier.pool.stats.workers_started
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            code = 0 if verifier.score(*symbolic_pairs(20)) == [1.0] else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert verifier.score(*symbolic_pairs(21)) == [1.0]  # the parent's still serve
    assert verifier.pool.stats.workers_started == started


def test_workers_that_cannot_start_raise_with_their_error() -> None:
    with DeadlinePool(1, preload=["ngrpo_rl_no_such_module"]) as broken:
        with pytest.raises(RuntimeError, match="fail to start(.|\n)*ModuleNotFoundError"):
            broken.map(abs, [-1], deadline=5)


def test_the_outer_deadline_is_the_configured_timeout(verifier: Verifier, monkeypatch) -> None:
    """math-verify gets 0.9 x timeout on its own timer and the pool kills it at exactly timeout."""
    calls: list[tuple[float, list]] = []
    pool = verifier.pool
    real_map = pool.map

    def recording_map(function, items, *, deadline):
        calls.append((deadline, list(items)))
        return real_map(function, items, deadline=deadline)

    monkeypatch.setattr(pool, "map", recording_map)
    verdicts = verifier.verify_batch(*symbolic_pairs(22), timeout=3.0)
    assert verdicts[0].method == "math_verify" and verdicts[0].correct
    (deadline, items), = calls
    assert deadline == 3.0
    assert items[0][2] == pytest.approx(0.9 * 3.0)


def test_a_stuck_item_is_killed_at_its_deadline(pool: DeadlinePool) -> None:
    pool.map(abs, [-1, -2, -3, -4], deadline=5)  # workers started and idle
    for deadline in (0.5, 1.0):
        start = time.perf_counter()
        (result,) = pool.map(time.sleep, [30], deadline=deadline)
        elapsed = time.perf_counter() - start
        assert result.status == "timeout"
        assert deadline <= elapsed < deadline + 2.0  # 2 s of slack for a loaded machine


def test_answers_of_exactly_max_answer_chars_are_still_judged() -> None:
    verifier = Verifier(num_workers=1, max_answer_chars=3)
    try:
        verdicts = verifier.verify_batch(["\\boxed{123}", "\\boxed{1234}"], ["123", "1234"])
        assert verdicts == [Verdict(True, "123", "correct", "exact"), Verdict(False, "1234", "wrong", "too_long")]
        assert verifier.stats.fast_path == 2 and verifier.stats.math_verify == 0
    finally:
        verifier.close()


# -- the verdict memo -------------------------------------------------------------------------


class _FakePool:
    """Stands in for the worker pool: answers from a table, records what it was asked."""

    def __init__(self, outcomes: dict[str, ItemResult]) -> None:
        self.outcomes = outcomes
        self.asked: list[str] = []
        self.owner_pid = os.getpid()

    def map(self, function, items, *, deadline):  # noqa: ANN001 - the DeadlinePool signature
        self.asked += [answer for _, answer, _ in items]
        return [self.outcomes[answer] for _, answer, _ in items]


@pytest.fixture
def faked() -> Iterator[tuple[Verifier, _FakePool]]:
    """A verifier whose math-verify answers come from a table: "\\pi" correct, "e" wrong,
    "slow" a timeout, "crash" a crashed worker, "bad" an exception inside math-verify."""
    pool = _FakePool(
        {
            "\\pi": ItemResult("ok", "correct"),
            "e": ItemResult("ok", "wrong"),
            "slow": ItemResult("timeout", "no result within 5 s"),
            "late": ItemResult("ok", "timeout"),  # math-verify's own timer fired
            "crash": ItemResult("crashed", "the worker process died"),
            "bad": ItemResult("error", "ValueError: no"),
        }
    )
    verifier = Verifier(num_workers=1, cache_size=3)
    verifier._pool = pool  # type: ignore[assignment]  # white box: no workers needed
    yield verifier, pool


def boxed(*answers: str) -> list[str]:
    return [f"\\boxed{{{answer}}}" for answer in answers]


def test_the_memo_answers_a_pair_it_has_seen_without_asking_math_verify(faked) -> None:
    verifier, pool = faked
    first = verifier.verify_batch(boxed("\\pi", "e", "\\pi"), ["\\pi r", "\\pi r", "\\pi r"])
    assert pool.asked == ["\\pi", "e"]  # the batch's duplicate was compared once
    assert (verifier.stats.cache_hits, verifier.stats.cache_misses) == (1, 2)
    second = verifier.verify_batch(boxed("e", "\\pi"), ["\\pi r", "\\pi r"])
    assert pool.asked == ["\\pi", "e"]  # both from the memo
    assert second == [first[1], first[0]]
    assert second[0] == Verdict(False, "e", "wrong", "math_verify")
    assert (verifier.stats.cache_hits, verifier.stats.cache_misses) == (3, 2)
    assert verifier.stats.cache_hits + verifier.stats.cache_misses == verifier.stats.math_verify
    verifier.verify_batch(boxed("\\pi"), ["2\\pi r"])  # another gold: another pair
    assert pool.asked == ["\\pi", "e", "\\pi"]


@pytest.mark.parametrize("answer", ["slow", "late", "crash", "bad"])
def test_timeouts_crashes_and_errors_are_never_memoised(faked, answer: str) -> None:
    verifier, pool = faked
    for _ in range(2):
        (verdict,) = verifier.verify_batch(boxed(answer), ["\\pi"])
        assert not verdict.correct and verdict.method == "math_verify"
    assert pool.asked == [answer, answer]  # asked again: the first outcome was not the answer's
    assert verifier.stats.cache_misses == 2 and verifier.stats.cache_hits == 0
    assert verdict.reason == ("wrong" if answer == "bad" else "timeout")
    assert verifier.stats.worker_errors == (2 if answer == "bad" else 0)
    assert verifier.timeouts == (0 if answer == "bad" else 2)


def test_the_memo_forgets_the_least_recently_used_pair_first(faked) -> None:
    verifier, pool = faked  # cache_size=3
    for gold in ("1", "2", "3"):
        verifier.verify_batch(boxed("e"), [f"{gold}\\pi"])
    verifier.verify_batch(boxed("e"), ["1\\pi"])  # a hit: now the most recently used
    verifier.verify_batch(boxed("e"), ["4\\pi"])  # a fourth pair: "2\pi" goes
    assert len(pool.asked) == 4
    verifier.verify_batch(boxed("e", "e", "e"), ["1\\pi", "3\\pi", "4\\pi"])
    assert len(pool.asked) == 4  # all three still there
    verifier.verify_batch(boxed("e"), ["2\\pi"])
    assert len(pool.asked) == 5
    assert len(verifier._memo) == 3


def test_cache_size_zero_memoises_nothing_and_clear_cache_forgets(faked) -> None:
    verifier, pool = faked
    verifier.verify_batch(boxed("e"), ["\\pi"])
    verifier.clear_cache()
    verifier.verify_batch(boxed("e"), ["\\pi"])
    assert len(pool.asked) == 2
    plain = Verifier(num_workers=1, cache_size=0)
    plain._pool = pool  # type: ignore[assignment]
    for _ in range(2):
        plain.verify_batch(boxed("e", "e"), ["\\pi", "\\pi"])
    assert len(pool.asked) == 4  # once per batch: only the batch's own duplicate is shared
    assert (plain.stats.cache_hits, plain.stats.cache_misses) == (2, 2)
    with pytest.raises(ValueError, match="cache_size"):
        Verifier(cache_size=-1)


def test_memoised_verdicts_equal_unmemoised_ones(verifier: Verifier) -> None:
    """The same batches through the real workers, with and without the memo."""
    completions = boxed(
        "\\frac{6\\pi}{2}", "\\frac{7\\pi}{2}", "x^2 + 2x", "x(x+2)", "\\text{B}", "y", "3", "2\\pi"
    )
    golds = ["3\\pi", "3\\pi", "x(x+2)", "x^2+2x", "\\text{(B)}", "x", "3", "\\tau"]
    plain = Verifier(num_workers=1, cache_size=0, timeout=DEADLINE)
    try:
        expected = [plain.verify_batch(completions, golds) for _ in range(2)]
    finally:
        plain.close()
    memoised = [verifier.verify_batch(completions, golds) for _ in range(2)]
    assert memoised == expected
    assert memoised[0] == memoised[1]
    assert [v.correct for v in memoised[0]] == [True, False, True, True, True, False, True, False]


def test_stats_snapshots_subtract_and_configure_verifier_sets_the_memo_size() -> None:
    stats = ngrpo_rl.envs.VerifierStats(answers=5, cache_hits=2)
    before = stats.snapshot()
    stats.answers += 3
    assert before.answers == 5  # a copy
    zero = dataclasses.asdict(ngrpo_rl.envs.VerifierStats())
    assert (stats - before).as_dict() == {**zero, "answers": 3}
    try:
        assert ngrpo_rl.envs.configure_verifier(cache_size=7).cache_size == 7
    finally:
        ngrpo_rl.envs.configure_verifier()
    assert ngrpo_rl.envs.get_verifier().cache_size == DEFAULT_CACHE_SIZE
