"""The CLI's config handling, and docs that must agree with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ngrpo_rl import cli, logged_metrics

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_doc_is_generated_from_the_catalog():
    assert (ROOT / "docs" / "METRICS.md").read_text() == logged_metrics.markdown_table(), (
        "docs/METRICS.md is stale: run python -m ngrpo_rl.logged_metrics > docs/METRICS.md"
    )


def test_config_doc_is_generated_from_the_settings_table():
    from ngrpo_rl import settings

    assert (ROOT / "docs" / "CONFIG.md").read_text() == settings.markdown_table(), (
        "docs/CONFIG.md is stale: run python -m ngrpo_rl.settings > docs/CONFIG.md"
    )


def test_evaluation_keys_are_recognised():
    assert logged_metrics.is_defined("evaluation/pass_at_16")
    assert not logged_metrics.is_defined("evaluation/pass_at_x")
    assert not logged_metrics.is_defined("groups/frac_something_else")


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block == [
        "bash scripts/setup.sh && .venv/bin/ngrpo-rl train",
        "bash scripts/setup.sh dev && .venv/bin/python -m pytest",
    ]
    assert (ROOT / ".ci" / "run").read_text().count("bash scripts/setup.sh dev && .venv/bin/python -m pytest") == 1


def test_job_file_and_overrides_build_the_config(tmp_path):
    job_file = tmp_path / "job.yaml"
    job_file.write_text("algorithm: grpo\ngroup_size: 4\nepsilon_pos: 0.3\n")
    job = cli.load_job(job_file, ["epsilon_neg=0.1", "evaluation_ks=[1, 2]", "lr=5e-5"])
    name, config = cli.build_config(job)
    assert name == "grpo"
    assert (config.group_size, config.epsilon_pos, config.epsilon_neg) == (4, 0.3, 0.1)
    assert config.evaluation_ks == (1, 2)
    assert config.lr == 5e-5
    from ngrpo_rl.algorithms import GRPOConfig

    preset = GRPOConfig()
    assert (config.loss_agg_mode, config.kl_coef) == (preset.loss_agg_mode, preset.kl_coef)  # GRPO's preset survives


def test_set_reads_each_value_by_its_declared_type():
    job = cli.load_job(None, [
        "betas=[0.9,0.95]", "dual_clip_c=null", "evaluation_ks=[1,2]", "std_normalize=false",
        "lr=5e-5", "device=cuda:1", "reward_shaping=[overlong_penalty]", "overlong_buffer=4",
    ])
    assert job["betas"] == (0.9, 0.95) and job["evaluation_ks"] == (1, 2)
    assert job["dual_clip_c"] is None and job["std_normalize"] is False and job["lr"] == 5e-5
    assert job["device"] == "cuda:1" and job["reward_shaping"] == ("overlong_penalty",)
    _, config = cli.build_config(job)
    assert config.betas == (0.9, 0.95) and config.dual_clip_c is None


def test_yaml_lists_become_tuples(tmp_path):
    job_file = tmp_path / "job.yaml"
    job_file.write_text("betas: [0.9, 0.95]\nevaluation_ks: [1, 2]\nlr: 5e-5\n")
    _, config = cli.build_config(cli.load_job(job_file, []))
    assert config.betas == (0.9, 0.95) and config.evaluation_ks == (1, 2) and config.lr == 5e-5


def test_set_refuses_an_unreadable_or_invalid_value_naming_the_field():
    with pytest.raises(SystemExit, match="group_size"):
        cli.load_job(None, ["group_size=many"])
    with pytest.raises(SystemExit, match="dtype.*float7"):
        cli.build_config(cli.load_job(None, ["dtype=float7"]))
    with pytest.raises(SystemExit, match="epsilon_neg.*nan"):
        cli.build_config(cli.load_job(None, ["epsilon_neg=nan"]))
    with pytest.raises(SystemExit, match="advantage_estimator.*ngrpo"):
        cli.build_config(cli.load_job(None, ["advantage_estimator=nrgpo"]))


def test_main_job_keeps_its_own_weight_decay():
    assert cli.MAIN_JOB["weight_decay"] == 0.0
    _, config = cli.build_config(dict(cli.MAIN_JOB))
    assert config.weight_decay == 0.0


def test_unknown_key_is_refused_with_a_suggestion():
    with pytest.raises(SystemExit, match="epsilon_pos"):
        cli.build_config(cli.load_job(None, ["epsilon_pso=0.3"]))
    with pytest.raises(SystemExit, match="unknown config key 'train_batch_size'"):
        cli.build_config(cli.load_job(None, ["train_batch_size=4"]))  # RLlib's, not ours


def test_bad_value_is_refused_naming_the_field():
    with pytest.raises(SystemExit, match="group_size"):
        cli.build_config(cli.load_job(None, ["group_size=1"]))


def test_main_job_is_valid_ngrpo():
    name, config = cli.build_config(dict(cli.MAIN_JOB))
    assert name == "ngrpo" and config.advantage_estimator == "ngrpo"


def test_components_command_prints_the_reference_row():
    out = subprocess.run(
        [sys.executable, "-m", "ngrpo_rl.cli", "components"], capture_output=True, text=True, check=True
    ).stdout
    assert "+1.764" in out and "-0.504" in out
