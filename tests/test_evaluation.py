"""pass@k evaluation: samples are counted against the problem they answer."""

from __future__ import annotations

import pytest
import torch

from ngrpo_rl import group_filters
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


def test_a_reward_counts_as_correct_only_above_one_half_as_in_the_group_filters():
    rewards = [1.0, 0.5, 0.75, 0.0, 0.5000001, 0.49]

    def generate(prompts, params):
        rows = ["t"] * (len(prompts) * params.n)
        return GenerationOutput([[1]] * len(rows), [[2]] * len(rows), [[-1.0]] * len(rows), rows,
                                [False] * len(rows))

    result = evaluate_pass_at_k(
        generate, lambda completions, golds: rewards, ["p0", "p1"], ["g", "g"],
        samples_per_problem=3, ks=(1,), params=SamplingParams(n=1),
    )
    assert result.correct_counts == (2, 1)
    flags = group_filters._correctness(torch.tensor([rewards]), None)[0].tolist()
    assert flags == [True, False, True, False, True, False]


# -- the report of ngrpo-rl eval -------------------------------------------------------------------


def test_report_round_trips_through_json_and_recomputes_from_its_counts():
    from ngrpo_rl.evaluation import EvaluationReport, ProblemOutcome

    # Problems may have different n: each is estimated from its own n and c.
    outcomes = [ProblemOutcome("a", 8, 3), ProblemOutcome("b", 4, 0), ProblemOutcome("c", 4, 4)]
    report = EvaluationReport.from_counts(outcomes, (4, 1, 2), {"seed": 0})
    assert report.ks == (1, 2, 4)
    assert report.pass_at_k[2] == pytest.approx((pass_at_k(8, 3, 2) + 0.0 + 1.0) / 3)
    text = report.to_json()
    loaded = EvaluationReport.from_json(text)
    assert loaded == report and loaded.to_json() == text
    edited = EvaluationReport.from_json(text.replace('"correct": 3', '"correct": 5'))
    assert edited.recomputed().pass_at_k[1] == pytest.approx((5 / 8 + 0 + 1) / 3)
    assert edited.recomputed().auc != pytest.approx(report.auc)


def test_single_k_has_no_auc_and_ks_above_the_smallest_n_are_refused():
    from ngrpo_rl.evaluation import EvaluationReport, ProblemOutcome

    assert EvaluationReport.from_counts([ProblemOutcome("a", 1, 1)], (1,)).auc is None
    with pytest.raises(ValueError, match=r"k = \[8\] > n = 4"):
        EvaluationReport.from_counts([ProblemOutcome("a", 8, 1), ProblemOutcome("b", 4, 1)], (1, 8))


def test_protocol_defaults_are_the_papers_and_its_ks_the_powers_of_two_up_to_n():
    from ngrpo_rl.commands.evaluate import DEFAULTS
    from ngrpo_rl.evaluation import EvaluationProtocol, powers_of_two_up_to

    protocol = EvaluationProtocol()
    assert (protocol.n, protocol.temperature, protocol.top_p, protocol.max_new_tokens) == (256, 0.6, 0.95, 4096)
    assert {key: getattr(protocol, key) for key in DEFAULTS} == DEFAULTS  # the CLI's defaults agree
    assert protocol.resolved_ks == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert powers_of_two_up_to(6) == (1, 2, 4) and powers_of_two_up_to(1) == (1,)
    # Each problem chunk gets its own seed, fixed by the protocol's seed.
    assert protocol.sampling_params(0).seed != protocol.sampling_params(1).seed
    assert EvaluationProtocol(seed=0).sampling_params(1) == protocol.sampling_params(1)
    with pytest.raises(ValueError, match="raise --n"):
        EvaluationProtocol(n=4, ks=(1, 2, 8))


def test_tensorboard_gets_the_pass_at_k_curve_as_an_image(tmp_path):
    from ngrpo_rl.algorithms.reporting import PASS_AT_K_CURVE_TAG, TensorBoardWriter
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorBoardWriter(str(tmp_path))
    writer.pass_at_k_curve({1: 0.2, 2: 0.3, 4: 0.5}, step=100)
    writer.pass_at_k_curve({1: 0.3, 2: 0.4, 4: 0.6}, step=200)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    images = events.Images(PASS_AT_K_CURVE_TAG)
    assert [image.step for image in images] == [100, 200]
    assert all(image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
