"""pass@k evaluation: samples are counted against the problem they answer."""

from __future__ import annotations

import pytest

from ngrpo_rl.evaluation import evaluate_pass_at_k
from ngrpo_rl.generation.types import GenerationOutput, SamplingParams
from ngrpo_rl.metrics import pass_at_k


def test_each_problems_samples_are_counted_for_that_problem():
    texts = {"p0": ["a", "a", "a", "a"], "p1": ["b", "x", "x", "x"], "p2": ["x", "x", "c", "c"]}
    seen = {}

    def generate(prompts, params):
        seen["n"] = params.n
        rows = [t for p in prompts for t in texts[p]]  # prompt-major, as the backends return
        return GenerationOutput([[1]] * len(rows), [[2]] * len(rows), [[-1.0]] * len(rows), rows,
                                [False] * len(rows))

    def score(completions, golds):
        return [1.0 if c == g else 0.0 for c, g in zip(completions, golds)]

    result = evaluate_pass_at_k(
        generate, score, ["p0", "p1", "p2"], ["a", "b", "c"], samples_per_problem=4, ks=(1, 2),
        params=SamplingParams(n=1), groups=["easy", "hard", "hard"], problem_ids=["i0", "i1", "i2"],
    )
    assert seen["n"] == 4
    counts = [4, 1, 2]
    assert result.correct_counts == (4, 1, 2) and result.problem_ids == ("i0", "i1", "i2")
    assert result.overall[1] == pytest.approx(sum(counts) / 12)
    assert result.overall[2] == pytest.approx(sum(pass_at_k(4, c, 2) for c in counts) / 3)
    assert result.by_group["easy"][1] == pytest.approx(1.0)
    assert result.by_group["hard"][1] == pytest.approx((1 + 2) / 8)
    assert result.by_group["hard"][2] == pytest.approx((pass_at_k(4, 1, 2) + pass_at_k(4, 2, 2)) / 2)
