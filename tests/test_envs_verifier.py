"""The verifier: fast path, math-verify in worker processes, deadlines, threads, crashes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import ngrpo_rl.envs
from ngrpo_rl.envs import Verdict, Verifier, score, verify_batch
from ngrpo_rl.envs.process_pool import DeadlinePool

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
            "\\boxed{\\frac{\\sqrt{2}}{2}}",
        ],
        ["25", "1234", "3", "27.0", "\\frac{1}{\\sqrt{2}}"],
    )
    assert verdicts[0] == Verdict(True, "025", "correct", "numeric")
    assert verdicts[1] == Verdict(True, "1234", "correct", "exact")
    assert verdicts[2] == Verdict(False, None, "no_answer", "none")
    assert verdicts[3] == Verdict(False, "26", "wrong", "numeric")
    assert verdicts[4] == Verdict(True, "\\frac{\\sqrt{2}}{2}", "correct", "math_verify")
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
    verifier.verify_batch(["\\boxed{\\sqrt{8}}"] * 16, ["2\\sqrt{2}"] * 16)
    assert verifier.pool.stats.items - before == 1


def test_stats_count_paths_and_module_functions_use_the_shared_verifier() -> None:
    shared = ngrpo_rl.envs.get_verifier()
    before = dataclass_copy(shared.stats)
    verify_batch(["1", "", "\\boxed{\\sqrt{4}}"], ["1", "1", "2"])
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
    verifier = Verifier(num_workers=1)
    assert verifier.score(["\\boxed{\\sqrt{9}}"], ["3"]) == [1.0]
    verifier.close()
    assert verifier.score(["\\boxed{\\sqrt{9}}"], ["3"]) == [1.0]
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
    assert verifier.score(["\\boxed{\\sqrt{4}}"], ["2"]) == [1.0]  # the parent's workers run
    started = verifier.pool.stats.workers_started
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            code = 0 if verifier.score(["\\boxed{\\sqrt{9}}"], ["3"]) == [1.0] else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert verifier.score(["\\boxed{\\sqrt{16}}"], ["4"]) == [1.0]  # the parent's still serve
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
    verdicts = verifier.verify_batch(["\\boxed{\\sqrt{4}}"], ["2"], timeout=3.0)
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
