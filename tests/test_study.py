"""The comparison study and the sweep: statistics against hand-computed numbers, the variants
registry, the mechanism metric, the report on synthetic records, and `ngrpo-rl compare` / `sweep`
end to end (a miniature, and the resume of an interrupted sweep)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl import metrics
from ngrpo_rl.evaluation import PassAtKResult
from ngrpo_rl.study import analysis, jobs, layout, stats, variants
from ngrpo_rl.study.records import TrialRecord

ROOT = Path(__file__).resolve().parents[1]
MAIN_JOB = {
    "algorithm": "ngrpo", "iterations": 300, "env": "ngrpo_rl/Arithmetic-v0",
    "env_config": {"levels": [3, 4], "seed": 0, "num_problems": 10000}, "seed": 0, "lr": 1e-4,
    "max_new_tokens": 8, "checkpoint_every": 50, "keep_checkpoints": 3, "weight_decay": 0.0,
}


# ---- stats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [
    (1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (10_000, 1.9602),
])
def test_t_quantile_matches_the_printed_table(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=5e-5)


def test_t_quantile_is_symmetric_and_half_is_zero():
    assert stats.t_quantile(0.5, 3) == 0.0
    assert stats.t_quantile(0.025, 4) == pytest.approx(-stats.t_quantile(0.975, 4), abs=1e-12)
    assert stats.t_quantile(0.95, 4) == pytest.approx(2.1318, abs=5e-5)  # one-sided 95%


def test_regularized_beta_known_values():
    assert stats.regularized_beta(0.3, 1, 1) == pytest.approx(0.3)  # uniform
    assert stats.regularized_beta(0.3, 3, 1) == pytest.approx(0.3**3)  # I_x(a, 1) = x^a
    assert stats.regularized_beta(0.5, 2.5, 2.5) == pytest.approx(0.5)  # symmetric


def test_mean_interval_worked_example():
    # 1..5: mean 3, s = sqrt(2.5) = 1.5811, half width 2.7764 * 1.5811 / sqrt(5) = 1.9632.
    interval = stats.mean_interval([1, 2, 3, 4, 5])
    assert (interval.mean, interval.n) == (3.0, 5)
    assert interval.std == pytest.approx(1.58114, abs=1e-5)
    assert (interval.low, interval.high) == (pytest.approx(1.03676, abs=1e-5), pytest.approx(4.96324, abs=1e-5))
    assert interval.excludes(0.0) and not interval.excludes(3.0)
    assert interval.format(".2f") == "3.00 [1.04, 4.96]"


def test_paired_difference_worked_example_pairs_by_seed():
    a = {0: 10.0, 1: 12.0, 2: 11.0}
    b = {0: 9.0, 1: 10.0, 2: 10.0, 3: 50.0}  # seed 3 has no partner and is ignored
    # Differences 1, 2, 1: mean 4/3, s = 0.57735, t(0.975, 2) = 4.3027, half width 1.4343.
    d = stats.paired_difference(a, b)
    assert d.n == 3 and d.mean == pytest.approx(4 / 3)
    assert (d.low, d.high) == (pytest.approx(-0.10094, abs=1e-4), pytest.approx(2.76761, abs=1e-4))
    assert not d.excludes(0.0)  # within seed noise
    tight = stats.paired_difference({0: 2.0, 1: 2.1, 2: 1.9}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert tight.excludes(0.0)
    with pytest.raises(ValueError, match="no key"):
        stats.paired_difference({0: 1.0}, {1: 1.0})


def test_one_value_has_no_interval():
    interval = stats.mean_interval([4.2])
    assert math.isnan(interval.low) and not interval.excludes(0.0)
    assert interval.format(".1f") == "4.2"


@settings(max_examples=60, deadline=None)
@given(p=st.floats(0.51, 0.999), df=st.integers(1, 200))
def test_t_quantile_inverts_the_cdf_and_shrinks_with_df(p, df):
    x = stats.t_quantile(p, df)
    assert stats.t_cdf(x, df) == pytest.approx(p, abs=1e-9)
    assert stats.t_quantile(p, df + 1) < x


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-100, 100), min_size=2, max_size=12), shift=st.floats(-50, 50),
       scale=st.floats(0.1, 10))
def test_interval_contains_the_mean_and_moves_with_the_data(values, shift, scale):
    interval = stats.mean_interval(values)
    assert interval.low <= interval.mean <= interval.high
    moved = stats.mean_interval([scale * v + shift for v in values])
    assert moved.mean == pytest.approx(scale * interval.mean + shift, abs=1e-6)
    assert moved.half_width == pytest.approx(scale * interval.half_width, rel=1e-6, abs=1e-6)
    assert stats.mean_interval(values, 0.99).half_width >= interval.half_width - 1e-12


def test_t_distribution_agrees_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 4, 7.5, 29, 300):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9)
        for x in (-3.0, -0.5, 0.0, 1.2, 6.0):
            assert stats.t_cdf(x, df) == pytest.approx(scipy_stats.t.cdf(x, df), abs=1e-12)


# ---- variants and the shared job --------------------------------------------------------------------


@pytest.fixture(scope="module")
def job():
    return jobs.study_job(MAIN_JOB)


def test_study_job_drops_run_keys_and_fixes_the_budget(job):
    assert not {"algorithm", "iterations", "checkpoint_every", "keep_checkpoints"} & set(job)
    assert job["max_sampling_rounds"] == 1 and job["num_minibatches"] == 4 and job["minibatch_size"] is None
    assert job["critic_lr"] == pytest.approx(10 * job["lr"])
    assert jobs.study_job(MAIN_JOB, {"lr": 3e-4})["critic_lr"] == pytest.approx(3e-3)
    assert jobs.study_job(MAIN_JOB, {"critic_lr": 1e-5})["critic_lr"] == 1e-5
    assert jobs.generation_budget(job, 100) == 32 * 8 * 100
    with pytest.raises(ValueError, match="unknown config key"):
        jobs.study_job(MAIN_JOB, {"epsilon_postive": 0.3})


def test_every_variant_keeps_the_shared_budget_and_evaluation(job):
    shared = ("prompts_per_step", "group_size", "max_sampling_rounds", "num_minibatches", "lr",
              "evaluation_num_problems", "evaluation_samples_per_problem", "evaluation_ks", "max_new_tokens")
    for name in variants.variants:
        config = variants.get(name).config(job)
        assert {field: getattr(config, field) for field in shared} == {
            field: jobs.build_config("grpo", job).__getattribute__(field) for field in shared
        }, name
    # DAPO's preset oversamples (4 rounds); at equal budget it samples once like every variant.
    assert variants.get("dapo").config(job).max_sampling_rounds == 1


def test_preset_variants_are_their_presets_and_the_ablations_change_one_thing(job):
    grpo = variants.get("grpo").config(job)
    for name in ("ngrpo", "grpo", "dapo", "dr_grpo", "psr_nsr", "ppo"):
        variant = variants.get(name)
        assert variant.algorithm == name and dict(variant.overrides) == {}
        assert variants.config_differences(variant.config(job), jobs.build_config(name, job)) == {}
    asym = variants.config_differences(variants.get("grpo+asym_clip").config(job), grpo)
    assert asym == {"epsilon_pos": (0.24, 0.2), "epsilon_neg": (0.16, 0.2)}
    virtual = variants.config_differences(variants.get("grpo+virtual_reward").config(job), grpo)
    assert virtual == {"advantage_estimator": ("ngrpo", "grpo")}
    # The ablations are pieces of NGRPO: each changed field takes NGRPO's value.
    ngrpo = variants.config_differences(variants.get("ngrpo").config(job), grpo)
    for piece in (asym, virtual):
        assert {field: ngrpo[field] for field in piece} == piece
    assert set(variants.STUDY_VARIANTS) <= set(variants.variants)


def test_the_report_side_imports_without_ray_or_matplotlib():
    check = (
        "import sys, ngrpo_rl.study, ngrpo_rl.study.report, ngrpo_rl.study.analysis, ngrpo_rl.study.variants, "
        "ngrpo_rl.study.stats, ngrpo_rl.study.jobs, ngrpo_rl.commands.compare, ngrpo_rl.commands.sweep; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'matplotlib')); assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_variant_registry_refuses_duplicates_and_names_the_known_ones():
    with pytest.raises(ValueError, match="already registered"):
        variants.register(variants.Variant("ngrpo", "grpo"))
    with pytest.raises(KeyError, match="grpo\\+asym_clip"):
        variants.get("ngrpo+nothing")


def test_sweep_grid_values_are_read_by_their_field_type():
    from ngrpo_rl.study.sweep import SweepSpec, parse_grid, parse_ranges

    assert parse_grid(["epsilon_pos=0.2,0.28", "group_filter=none,drop_all_correct"]) == {
        "epsilon_pos": (0.2, 0.28), "group_filter": ("none", "drop_all_correct")}
    assert parse_ranges(["epsilon_neg=0.05:0.3"]) == {"epsilon_neg": (0.05, 0.3)}
    with pytest.raises(ValueError):
        parse_grid(["epsilon_pos"])
    spec = SweepSpec(job=jobs.study_job(MAIN_JOB), seeds=(0, 1, 2))
    assert spec.num_trials == 4 * 4 * 3 and spec.fields == ("epsilon_pos", "epsilon_neg")
    with pytest.raises(KeyError, match="epsilon_pos"):
        SweepSpec(job=jobs.study_job(MAIN_JOB), grid={"epsilon_postive": (0.1,)})
    with pytest.raises(ValueError, match="evaluation_every"):
        SweepSpec(job=jobs.study_job(MAIN_JOB), scheduler="asha")


# ---- synthetic records ---------------------------------------------------------------------------------

N = 8
KS = (1, 2, 4, 8)
IDS = tuple(f"p{i}" for i in range(6))


def evaluation(counts) -> PassAtKResult:
    counts = list(counts)
    levels = {3: counts[:3], 4: counts[3:]}  # p0-p2 are level 3, p3-p5 level 4
    return PassAtKResult(
        ks=KS, overall=metrics.benchmark_pass_at_k(counts, N, KS),
        by_group={level: metrics.benchmark_pass_at_k(c, N, KS) for level, c in levels.items()},
        num_problems=len(counts), samples_per_problem=N, correct_counts=tuple(counts), problem_ids=IDS,
    )


# The warm start never solves p3, p4, p5.
WARM = evaluation([4, 2, 1, 0, 0, 0])
CONTROL = evaluation([3, 2, 2, 1, 0, 0])  # a second draw solves p3: 1 of 3

# variant -> seed -> final counts (p3..p5 are the never-solved ones).
COUNTS = {
    "grpo": {0: [4, 2, 1, 0, 0, 0], 1: [5, 2, 1, 1, 0, 0], 2: [4, 3, 1, 0, 0, 0]},
}
# NGRPO: one more correct sample on each of p0..p4 in every seed.
COUNTS["ngrpo"] = {seed: [c + (i < 5) for i, c in enumerate(counts)] for seed, counts in COUNTS["grpo"].items()}


def record(variant, seed, counts, iterations=3, finished=True) -> TrialRecord:
    rec = TrialRecord(variant=variant, seed=seed, iterations=iterations)
    for i in range(iterations if finished else 1):
        rec.add_iteration({"groups": {"frac_all_incorrect": 0.5 - 0.1 * i, "sampled": 4.0},
                           "clip": {"upper_frac": 0.01, "lower_frac": 0.02 * (variant == "ngrpo")}})
    rec.evaluation = evaluation(counts) if finished else None
    rec.time_total_s = 10.0
    return rec


def synthetic_records():
    return [record(v, s, c) for v, by_seed in COUNTS.items() for s, c in by_seed.items()]


def test_mechanism_metric_counts_the_problems_the_warm_start_never_solved():
    assert analysis.never_solved(WARM) == ("p3", "p4", "p5")
    assert analysis.fraction_solved(evaluation([0, 0, 0, 1, 1, 0]), ("p3", "p4", "p5")) == pytest.approx(2 / 3)
    assert analysis.fraction_solved(CONTROL, ("p3", "p4", "p5")) == pytest.approx(1 / 3)
    assert math.isnan(analysis.fraction_solved(WARM, ()))
    with pytest.raises(ValueError, match="not evaluated"):
        analysis.fraction_solved(WARM, ("p9",))


def test_study_summary_numbers_are_computed_from_the_counts():
    records = synthetic_records() + [record("grpo", 3, [0] * 6, finished=False)]
    summary = analysis.summarize_study(records, WARM, baseline="grpo", group_size=8, warm_start_control=CONTROL)
    assert summary.unfinished == ["grpo seed 3: 1/3 iterations"]
    assert summary.variants["grpo"].seeds == (0, 1, 2)
    # Never-solved now solved (p3, p4, p5): ngrpo 2/3 in every seed; grpo 0, 1/3, 0.
    solved = summary.variants["ngrpo"].outcomes["solved_from_never"]
    assert solved.mean == pytest.approx(100 * 2 / 3) and solved.std == pytest.approx(0.0, abs=1e-9)
    expected = stats.paired_difference({0: 200 / 3, 1: 200 / 3, 2: 200 / 3}, {0: 0.0, 1: 100 / 3, 2: 0.0})
    got = summary.differences["ngrpo"]["solved_from_never"]
    assert (got.mean, got.low, got.high, got.n) == pytest.approx((expected.mean, expected.low, expected.high, 3))
    aucs = {s: metrics.pass_at_k_auc(evaluation(c).overall) for s, c in COUNTS["ngrpo"].items()}
    assert summary.variants["ngrpo"].outcomes["pass_at_k_auc"].mean == pytest.approx(sum(aucs.values()) / 3)
    assert summary.control_solved_from_never == pytest.approx(1 / 3)
    # The start: the first iterations' all-wrong share, one value per seed (0.5, 0.4, 0.3 -> 0.4).
    assert summary.start_all_wrong.mean == pytest.approx(0.4) and summary.start_all_wrong.n == 3
    assert summary.variants["grpo"].generated_responses == 3 * 4 * 8
    assert summary.variants["ngrpo"].steps["groups/frac_all_incorrect"] == pytest.approx([0.5, 0.4, 0.3])


def test_record_round_trips_through_json(tmp_path):
    rec = record("grpo+asym_clip", 2, [1, 2, 3, 0, 0, 8])
    rec.params = {"epsilon_pos": 0.28}
    rec.history["policy/entropy"][1] = math.nan
    loaded = TrialRecord.load(rec.save(tmp_path / "r.json"))
    assert loaded.label == "grpo+asym_clip_epsilon_pos-0.28_seed2"
    assert loaded.evaluation == rec.evaluation and loaded.finished
    assert math.isnan(loaded.history["policy/entropy"][1])
    assert loaded.history["groups/frac_all_incorrect"] == rec.history["groups/frac_all_incorrect"]


def write_synthetic_results(results_dir: Path) -> None:
    from ngrpo_rl.study.records import save_evaluation

    folder = layout.study_dir(results_dir)
    for rec in synthetic_records():
        rec.save(folder / layout.TRIALS / f"{rec.label}.json")
    save_evaluation(WARM, folder / layout.WARM_START)
    save_evaluation(CONTROL, folder / layout.WARM_START_CONTROL)
    (folder / layout.STUDY_FILE).write_text(json.dumps({
        "baseline": "grpo", "variants": ["grpo", "ngrpo"], "seeds": [0, 1, 2], "iterations": 3,
        "job": {"group_size": 8, "prompts_per_step": 4, "env": "ngrpo_rl/Arithmetic-v0", "num_minibatches": 4},
        "command": "ngrpo-rl compare --synthetic", "wall_time_s": [100.0, 30.0], "generation_budget": 96,
        "algorithms": {"grpo": "grpo", "ngrpo": "ngrpo"},
        "differences": {"grpo": {}, "ngrpo": {"advantage_estimator": ["ngrpo", "grpo"]}},
    }))
    sweep = layout.sweep_dir(results_dir)
    for eps_pos, eps_neg, seed, counts in [
        (0.2, 0.1, 0, [1, 1, 1, 0, 0, 0]), (0.2, 0.1, 1, [1, 2, 1, 0, 0, 0]),
        (0.2, 0.2, 0, [4, 4, 4, 4, 0, 0]), (0.2, 0.2, 1, [4, 5, 4, 4, 0, 0]),
        (0.3, 0.1, 0, [2, 2, 2, 2, 2, 0]), (0.3, 0.1, 1, [2, 2, 2, 2, 3, 0]),
    ]:
        rec = record("ngrpo", seed, counts)
        rec.params = {"epsilon_pos": eps_pos, "epsilon_neg": eps_neg}
        rec.save(sweep / layout.TRIALS / f"{rec.label}.json")
    (sweep / layout.SWEEP_FILE).write_text(json.dumps({
        "variant": "ngrpo", "search": "grid", "scheduler": "fifo", "seeds": [0, 1], "iterations": 3,
        "grid": {"epsilon_neg": [0.1, 0.2], "epsilon_pos": [0.2, 0.3]}, "fields": ["epsilon_pos", "epsilon_neg"],
        "job": {"group_size": 8, "prompts_per_step": 4, "evaluation_num_problems": 6,
                "evaluation_samples_per_problem": 8},
        "command": "ngrpo-rl sweep --synthetic", "wall_time_s": [50.0],
    }))


def test_report_writes_the_computed_numbers_and_figures(tmp_path):
    from ngrpo_rl.study.report import write_report

    results_dir = tmp_path / "docs" / "results"
    write_synthetic_results(results_dir)
    text = write_report(results_dir, tmp_path / "docs" / "results.md").read_text()
    summary = analysis.summarize_study(synthetic_records(), WARM, baseline="grpo", group_size=8,
                                       warm_start_control=CONTROL, order=["grpo", "ngrpo"])
    auc = summary.variants["ngrpo"].outcomes["pass_at_k_auc"]
    diff = summary.differences["ngrpo"]["pass_at_k_auc"]
    assert diff.excludes(0.0)  # ngrpo solves more of every problem in every seed
    # The results row and the bold paired difference carry exactly the computed numbers.
    assert f"| `ngrpo` | 3 | {auc.format('.1f')} |" in text
    assert f"| `ngrpo` - `grpo` | **{diff.mean:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}]** |" in text
    # pass@1 by level: ngrpo's level-4 problems (p3..p5) average (1 + 1 + 0) / 3 / 8 correct in seed 0, etc.
    level4 = sum(sum(c[3:]) / 24 for c in COUNTS["ngrpo"].values()) / 3
    assert f"| `ngrpo` | {100 * summary.variants['ngrpo'].pass_at_1_by_group[3]:.1f} | {100 * level4:.1f} |" in text
    assert "ngrpo-rl compare --synthetic" in text and "Wall time 2 min 10 s over 2 runs" in text
    assert "3 of the 6 held-out problems" in text and "solves 33.3% of them" in text
    assert f"Headline: NGRPO - GRPO in Pass@k AUC is {diff.mean:+.1f}" in text
    assert "larger than seed noise: its 95% interval excludes 0" in text
    assert "`advantage_estimator` ngrpo (vs grpo)" in text
    for figure in ("study/pass_at_k.png", "study/training.png", "sweep/heatmap.png"):
        assert (results_dir / figure).read_bytes().startswith(b"\x89PNG"), figure
        assert f"](results/{figure})" in text
    # The sweep: best cell first (0.2 / 0.2), separated from both others with 2 paired seeds.
    sweep_rows = re.findall(r"^\| (0\.\d+) \| (0\.\d+) \| 2 \| 3 \|", text, re.MULTILINE)
    assert sweep_rows[0] == ("0.2", "0.2") and len(sweep_rows) == 3
    assert "Best cell: epsilon_pos=0.2, epsilon_neg=0.2" in text
    assert "| epsilon_pos | epsilon_neg | seeds | iterations | Pass@k AUC | pass@1 (%) | pass@8 (%) |" in text


def test_report_says_what_has_not_run(tmp_path):
    from ngrpo_rl.study.report import write_report

    text = write_report(tmp_path / "results", tmp_path / "results.md").read_text()
    assert "## Comparison study\n\nNot run yet: `ngrpo-rl compare`" in text
    assert "## Epsilon sweep\n\nNot run yet: `ngrpo-rl sweep`" in text


# ---- end to end ----------------------------------------------------------------------------------------

# A small train split keeps the env's construction quick; everything else is the study's setup.
TINY = ["--set", "prompts_per_step=4", "--set", "evaluation_num_problems=8",
        "--set", "evaluation_samples_per_problem=4", "--set", "evaluation_ks=[1,2,4]",
        "--set", 'env_config={"levels": [3, 4], "seed": 0, "num_problems": 300}']


def ngrpo_rl(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    return subprocess.run([sys.executable, "-m", "ngrpo_rl.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)


def test_compare_miniature_writes_records_and_report(tmp_path):
    completed = ngrpo_rl("compare", "--variants", "ngrpo", "grpo", "--seeds", "0", "--iterations", "2",
                         *TINY, "--output-dir", "runs/mini", "--results-dir", "out/results",
                         "--report", "out/results.md", cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "expected wall time" in completed.stdout
    study = tmp_path / "out" / "results" / "study"
    for name in ("ngrpo", "grpo"):
        rec = TrialRecord.load(study / "trials" / f"{name}_seed0.json")
        assert rec.finished and rec.iterations_done == 2
        assert rec.evaluation.num_problems == 8 and rec.evaluation.samples_per_problem == 4
        assert len(rec.evaluation.correct_counts) == 8 and all(0 <= c <= 4 for c in rec.evaluation.correct_counts)
        assert rec.history["groups/sampled"] == [4.0, 4.0]  # one sampling round: equal budget
        assert all(0.0 <= v <= 1.0 for v in rec.history["groups/frac_all_incorrect"])
    warm = json.loads((study / "warm_start.json").read_text())["evaluation"]
    assert tuple(warm["problem_ids"]) == TrialRecord.load(study / "trials" / "ngrpo_seed0.json").evaluation.problem_ids
    spec = json.loads((study / "study.json").read_text())
    assert spec["generation_budget"] == 2 * 4 * 8 and spec["command"].startswith("ngrpo-rl compare")
    text = (tmp_path / "out" / "results.md").read_text()
    assert "| `ngrpo` - `grpo` |" in text and "2 iterations x 4 prompts x 8 responses = 64" in text
    assert (study / "pass_at_k.png").is_file() and (study / "training.png").is_file()
    # Rerunning with other settings in the same folder is refused rather than mixed in.
    refused = ngrpo_rl("compare", "--variants", "ngrpo", "grpo", "--seeds", "1", "--iterations", "2", *TINY,
                       "--output-dir", "runs/mini", "--results-dir", "out/results", "--report", "out/results.md",
                       cwd=tmp_path)
    assert refused.returncode != 0 and "other settings (differing: seeds)" in refused.stderr


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    args = ["sweep", "--grid", "epsilon_pos=0.2,0.28", "--grid", "epsilon_neg=0.16", "--seeds", "0",
            "--iterations", "4", "--checkpoint-every", "1", "--max-concurrent", "1", *TINY,
            "--output-dir", "runs/sweep", "--results-dir", "out/results", "--report", "out/results.md"]
    process = subprocess.Popen([sys.executable, "-m", "ngrpo_rl.cli", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trials = tmp_path / "runs" / "sweep" / "trials"
    deadline = time.monotonic() + 300
    while not list(trials.glob("StudyTrial_*/checkpoint_*")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()[-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # Ctrl-C while the first trial trains
    first_output = process.communicate(timeout=120)[0]
    assert "interrupted" in first_output, first_output[-3000:]
    started = sorted(p.name for p in trials.glob("StudyTrial_*"))
    assert started, first_output[-3000:]
    assert not (tmp_path / "out" / "results.md").exists()  # no report from a half-run sweep

    resumed = ngrpo_rl(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming the interrupted run" in resumed.stdout
    # The same experiment continued (its trial folders kept), not a new one beside it.
    assert set(started) <= {p.name for p in trials.glob("StudyTrial_*")}
    assert len(list(trials.glob("StudyTrial_*"))) == 2
    records = sorted((tmp_path / "out" / "results" / "sweep" / "trials").glob("*.json"))
    assert len(records) == 2
    for path in records:
        rec = TrialRecord.load(path)
        assert rec.finished and rec.iterations_done == 4 and len(rec.history["groups/sampled"]) == 4
    text = (tmp_path / "out" / "results.md").read_text()
    assert "## Epsilon sweep" in text and "Best cell:" in text
    assert "| epsilon_pos | epsilon_neg | seeds | iterations |" in text
    assert (tmp_path / "out" / "results" / "sweep" / "heatmap.png").is_file()
