"""``ngrpo-rl eval`` and ``ngrpo-rl plot``: the report, its determinism, its refusals, the figure."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from ngrpo_rl import cli
from ngrpo_rl.evaluation import (
    EvaluationProtocol,
    EvaluationReport,
    ProblemOutcome,
    evaluate_model,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Small enough for seconds on 2 CPU cores: 20 arithmetic problems x 4 samples x 8 tokens.
SMALL = ["--n", "4", "--num-problems", "20", "--max-new-tokens", "8", "--no-progress"]


@pytest.fixture(scope="module")
def default_model() -> str:
    """The bundled warm-started tiny model (built on a machine's first use, then cached): it
    solves some arithmetic problems and not others, so the counts vary between problems and seeds."""
    from ngrpo_rl.algorithms.default_model import DEFAULT_MODEL, resolve_model_path

    return resolve_model_path(DEFAULT_MODEL)


def calculate_metrics_auc(pass_at_k: list[float]) -> float:
    """The final score of the NGRPO code's ``calculate_metrics.py``, transcribed: pass@k at
    k = 1, 2, 4, ...; the inner points count twice; divided by 2 (len - 1); times 100."""
    total = sum(p if i in (0, len(pass_at_k) - 1) else 2 * p for i, p in enumerate(pass_at_k))
    return total / 2 / (len(pass_at_k) - 1) * 100


def test_auc_is_the_official_definition_on_a_worked_example():
    # n = 4 samples per problem, c = 0, 1, 2, 4 correct. By hand, pass@k = 1 - C(4-c, k) / C(4, k):
    #   k = 1: (0 + 1/4 + 2/4 + 1) / 4           = 7/16
    #   k = 2: (0 + (1 - 3/6) + (1 - 1/6) + 1) / 4 = 7/12
    #   k = 4: (0 + 1 + 1 + 1) / 4               = 3/4
    # calculate_metrics.py: (7/16 + 2 * 7/12 + 3/4) / 2 / 2 * 100 = 113/48 / 4 * 100 = 11300/192.
    outcomes = [ProblemOutcome(f"p{c}", 4, c) for c in (0, 1, 2, 4)]
    report = EvaluationReport.from_counts(outcomes, (1, 2, 4))
    assert report.pass_at_k == pytest.approx({1: 7 / 16, 2: 7 / 12, 4: 3 / 4})
    assert report.auc == pytest.approx(11300 / 192)
    assert calculate_metrics_auc([7 / 16, 7 / 12, 3 / 4]) == pytest.approx(11300 / 192)


def test_eval_twice_with_one_seed_gives_identical_json_and_its_auc_recomputes(default_model, tmp_path):
    out = tmp_path / "a.json"
    assert cli.main(["eval", default_model, "arithmetic", *SMALL, "--seed", "3", "--out", str(out)]) == 0
    again = evaluate_model(
        default_model, "arithmetic", EvaluationProtocol(n=4, max_new_tokens=8, seed=3),
        num_problems=20, progress=False,
    )
    assert again.to_json() == out.read_text()  # the CLI and the function, byte for byte

    saved = json.loads(out.read_text())
    assert list(saved) == ["per_problem", "pass_at_k", "auc", "settings"]
    assert list(saved["pass_at_k"]) == ["1", "2", "4"]
    assert len(saved["per_problem"]) == 20
    assert all(set(p) == {"id", "n", "correct"} and p["n"] == 4 for p in saved["per_problem"])
    counts = [p["correct"] for p in saved["per_problem"]]
    assert 0 < sum(counts) < 80, counts  # the warm-started model solves some, not all
    settings = saved["settings"]
    assert (settings["n"], settings["seed"], settings["max_new_tokens"]) == (4, 3, 8)
    assert (settings["temperature"], settings["top_p"], settings["prompt_template"]) == (0.6, 0.95, "plain")
    assert settings["model_path"] == str(Path(default_model).resolve())

    # The AUC and pass@k recomputed from the saved per-problem counts, two ways.
    loaded = EvaluationReport.load(out)
    assert loaded.recomputed().to_json() == out.read_text()
    by_hand = {
        k: sum(_pass_at_k(4, c, k) for c in counts) / len(counts) for k in (1, 2, 4)
    }
    assert saved["pass_at_k"] == pytest.approx({str(k): v for k, v in by_hand.items()})
    assert saved["auc"] == pytest.approx(calculate_metrics_auc([by_hand[1], by_hand[2], by_hand[4]]))

    # Another seed samples other responses: the seed is what makes the report repeat.
    other = evaluate_model(
        default_model, "arithmetic", EvaluationProtocol(n=4, max_new_tokens=8, seed=4),
        num_problems=20, progress=False,
    )
    assert [p.correct for p in other.per_problem] != counts


def _pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n - c, k) / C(n, k), with math.comb (an estimator written apart from the library's)."""
    from math import comb

    return 1.0 - comb(n - c, k) / comb(n, k)


def test_eval_refuses_k_above_n_naming_the_fix(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["eval", "no/such-model", "arithmetic", "--n", "4", "--ks", "1,2,8"])
    message = str(raised.value)
    assert "k = [8] > n = 4" in message and "--n" in message


def test_eval_refuses_an_unknown_benchmark_listing_the_names():
    with pytest.raises(SystemExit) as raised:
        cli.main(["eval", "no/such-model", "math5000", "--n", "4"])
    message = str(raised.value)
    assert "unknown benchmark 'math5000'" in message
    for name in ("math500", "aime24", "aime25", "amc23", "gsm8k", "olympiadbench", "arithmetic"):
        assert name in message
    assert "path" in message


def test_eval_refuses_an_unknown_prompt_template():
    with pytest.raises(SystemExit) as raised:
        cli.main(["eval", "no/such-model", "arithmetic", "--prompt-template", "qwen"])
    assert "qwen" in str(raised.value) and "official" in str(raised.value)


def test_a_checkpoint_or_run_folder_resolves_to_its_policy(tiny_model_dir, tmp_path):
    from ngrpo_rl.algorithms import checkpoints

    from ngrpo_rl.policy_paths import MANIFEST_FILE, resolve_policy

    assert MANIFEST_FILE == checkpoints.MANIFEST_FILE
    run = tmp_path / "run"
    for name, complete in (("checkpoint_000050", True), ("checkpoint_000100", True), ("checkpoint_000150", False)):
        shutil.copytree(tiny_model_dir, run / name / "learner" / "policy")
        if complete:  # a save writes its manifest last: without it the checkpoint is incomplete
            (run / name / MANIFEST_FILE).write_text("{}")
    (run / "job.json").write_text("{}")

    last = resolve_policy(run)
    assert last.checkpoint == str((run / "checkpoint_000100").resolve())
    assert last.path == str((run / "checkpoint_000100" / "learner" / "policy").resolve())
    assert resolve_policy(run / "checkpoint_000050").path.endswith("checkpoint_000050/learner/policy")
    assert resolve_policy(tiny_model_dir).checkpoint is None

    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "job.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="without a complete checkpoint_NNNNNN"):
        resolve_policy(empty)


def test_benchmark_names_read_the_real_files(shared_data):
    from ngrpo_rl.benchmark_sets import resolve_benchmark

    math500 = resolve_benchmark("MATH-500")
    assert math500.name == "math500" and math500.prompt_template == "official"
    assert len(math500.load(shared_data)) == 500
    [data_file] = math500.provenance(shared_data)["files"]
    assert data_file["sha256"].startswith("35dc41080a368085")  # SOURCES.md
    assert len(resolve_benchmark("aime2024").load(shared_data)) == 30
    gsm8k = resolve_benchmark("gsm8k").load(shared_data)
    assert len(gsm8k) == 1319  # the test split, not the 7,473 train problems
    by_path = resolve_benchmark(str(shared_data / "amc23" / "test.jsonl"))
    assert len(by_path.load()) == 40 and by_path.prompt_template == "official"


def test_eval_runs_on_a_real_benchmark_file(tiny_model_dir, shared_data, tmp_path):
    out = tmp_path / "aime24.json"
    args = ["eval", tiny_model_dir, "aime24", "--data-root", str(shared_data), "--n", "2",
            "--num-problems", "3", "--max-new-tokens", "4", "--no-progress", "--out", str(out)]
    assert cli.main(args) == 0
    report = EvaluationReport.load(out)
    assert [p.id for p in report.per_problem] == ["aime24-test-0", "aime24-test-1", "aime24-test-2"]
    assert report.settings["prompt_template"] == "official" and report.ks == (1, 2)
    assert report.settings["data"]["files"][0]["sha256"].startswith("af2b8bd2aa911b63")


# -- plots -----------------------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_pass_at_k_figure_has_one_curve_per_label_with_its_auc(tmp_path):
    from ngrpo_rl.plots import pass_at_k_figure, plot_pass_at_k_curves

    curves = {"base": {1: 0.25, 2: 0.5, 4: 0.75}, "ngrpo": {1: 0.5, 2: 0.5, 4: 1.0}, "one k": {1: 0.1}}
    figure = pass_at_k_figure(curves, title="t")
    [axes] = figure.axes
    lines = axes.get_lines()
    assert len(lines) == 3
    assert list(lines[0].get_xdata()) == [0.0, 1.0, 2.0]  # log2 k
    assert list(lines[1].get_ydata()) == [50.0, 50.0, 100.0]  # percent
    # AUC of base: 100 * (0.25 + 2 * 0.5 + 0.75) / 2 / 2 = 50; of ngrpo: 100 * (0.5 + 1 + 1) / 4 = 62.5
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["base (AUC 50.0)", "ngrpo (AUC 62.5)", "one k"]
    path = plot_pass_at_k_curves(curves, tmp_path / "sub" / "curves.png", "t")
    assert path == tmp_path / "sub" / "curves.png" and png_size(path)[0] > 100


def test_plot_command_draws_each_report(tmp_path, monkeypatch):
    from ngrpo_rl import plots

    paths = []
    for name, counts in (("base", (0, 1, 2, 4)), ("trained", (1, 2, 3, 4))):
        report = EvaluationReport.from_counts([ProblemOutcome(f"p{i}", 4, c) for i, c in enumerate(counts)], (1, 2, 4))
        paths.append(str(report.save(tmp_path / f"{name}.json")))
    drawn = {}
    real = plots.plot_pass_at_k_curves
    monkeypatch.setattr(plots, "plot_pass_at_k_curves", lambda curves, path, title="": drawn.update(curves) or real(curves, path, title))
    out = tmp_path / "curves.png"
    assert cli.main(["plot", *paths, "--out", str(out), "--title", "MATH"]) == 0
    assert png_size(out)[0] > 100
    assert list(drawn) == ["base", "trained"]
    assert drawn["base"] == pytest.approx({1: 7 / 16, 2: 7 / 12, 4: 3 / 4})

    (tmp_path / "bad.json").write_text('{"pass_at_k": {}}')
    with pytest.raises(SystemExit, match="not an evaluation report"):
        cli.main(["plot", str(tmp_path / "bad.json"), "--out", str(out)])


def test_heatmap_is_written_and_checks_its_shape(tmp_path):
    from ngrpo_rl.plots import plot_heatmap

    path = plot_heatmap([[1.0, 2.0, 3.0], [4.0, float("nan"), 6.0]], ["a", "b"], ["x", "y", "z"],
                        tmp_path / "h.png", title="AUC", row_name="eps+", col_name="eps-")
    assert png_size(path)[0] > 100
    with pytest.raises(ValueError, match="2 row labels x 2 column labels"):
        plot_heatmap([[1.0, 2.0, 3.0]], ["a", "b"], ["x", "y"], tmp_path / "bad.png")


@pytest.mark.slow
def test_training_draws_the_pass_at_k_curve_at_each_evaluation(tmp_path):
    import ray
    from ngrpo_rl.algorithms import NGRPOConfig
    from ngrpo_rl.algorithms.reporting import PASS_AT_K_CURVE_TAG
    from support import small
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        algo = small(NGRPOConfig(), tmp_path).evaluation(
            evaluation_interval=2, evaluation_num_problems=4, evaluation_samples_per_problem=2,
            evaluation_ks=(1, 2),
        ).build_algo()
        try:
            results = [algo.train() for _ in range(2)]
        finally:
            algo.stop()
    finally:
        ray.shutdown()
    assert "evaluation" not in results[0] and "pass_at_k_auc" in results[1]["evaluation"]
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert [image.step for image in events.Images(PASS_AT_K_CURVE_TAG)] == [2]
