"""scripts/gpu_check.py: the accelerator check, run here on the CPU with the tiny size."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def load_script() -> ModuleType:
    """The script as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON object:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}")
    return result, report


def test_tiny_run_on_cpu_is_ok_finite_and_exact_in_float32(tmp_path):
    out = tmp_path / "report.json"
    result, report = run_script(
        "--device", "cpu", "--size", "tiny", "--steps", "2", "--prompts", "2", "--group-size", "4",
        "--max-new-tokens", "6", "--out", str(out),
    )
    assert result.returncode == 0, (report.get("reasons"), result.stderr[-4000:])
    assert report["ok"] is True and report["reasons"] == []
    assert json.loads(out.read_text()) == report  # --out holds the same report
    assert {name: stage["status"] for name, stage in report["stages"].items()} == {
        name: "ok" for name in ("setup", "build", "generate", "batch", "learner", "logprob_gap", "learn")
    }
    # The script never imports Ray or vLLM.
    assert report["imported_ray_or_vllm"] == []

    assert report["dtype"] == "float32" and report["device"] == "cpu"
    assert report["model"]["architecture"] == "Qwen2ForCausalLM"
    assert report["model"]["tie_word_embeddings"] is True
    assert report["parameter_count"] > 0
    assert report["generation"]["sequences"] == 8
    assert report["generation_tokens_per_s"] > 0
    # Sampler (KV cache) and learner (one teacher-forced pass) agree to float32 rounding.
    assert report["logprob_gap_tokens"] > 0
    assert 0.0 <= report["logprob_gap_max"] < 1e-4
    assert report["logprob_gap_mean"] <= report["logprob_gap_max"]
    assert report["first_update"]["ratio/max"] == pytest.approx(1.0, abs=1e-4)

    assert len(report["losses"]) == 2 and all(math.isfinite(x) for x in report["losses"])
    assert all(math.isfinite(x) for x in report["grad_norms"])
    assert report["learner_optimizer_steps"] == 2
    assert report["learner_step_seconds_median"] > 0 and report["learner_tokens_per_s"] > 0
    assert report["param_update_fraction"] > 0.5  # float32 keeps AdamW's small steps
    assert report["peak_memory_gb"] is None  # CUDA memory only


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_stage_still_reports_and_exits_nonzero():
    result, report = run_script("--device", "cuda", "--size", "tiny", "--time-limit", "120")
    assert result.returncode == 1
    assert report["ok"] is False
    assert report["stages"]["setup"]["status"] == "error"
    assert "cuda" in report["stages"]["setup"]["error"].lower()
    assert report["stages"]["learn"]["status"] == "skipped"
    assert any(reason.startswith("stage setup error") for reason in report["reasons"])
    assert report["imported_ray_or_vllm"] == []


def test_the_qwen_size_is_qwen2_5_0_5b():
    """The written-out config gives the card's parameter count (built on the meta device: no
    memory, no initialisation), and the tokenizer covers the whole vocabulary."""
    gpu_check = load_script()
    size = gpu_check.SIZES["qwen2.5-0.5b"]
    with torch.device("meta"):
        model = gpu_check.build_model(size, torch.bfloat16, seed=0)
    assert sum(p.numel() for p in model.parameters()) == size.expected_parameters == 494_032_768
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert gpu_check.rope_theta_of(model.config) == 1_000_000.0
    tokenizer = gpu_check.build_tokenizer(size)
    assert len(tokenizer) == 151936
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 151643
    assert tokenizer.decode([size.vocab_size - 1, 120000]) == "<|t151935|><|t120000|>"
    prompt = "Question: what is 1 + 2?"
    assert tokenizer.decode(tokenizer(prompt)["input_ids"]) == prompt


def test_gap_bounds_are_tight_in_float32_and_loose_in_bfloat16():
    bounds = load_script().GAP_BOUNDS
    assert bounds["float32"]["max"] <= 1e-3 and bounds["float32"]["mean"] <= 1e-4
    assert bounds["bfloat16"]["mean"] >= 1e-2  # ~1e-2 is the normal bf16 KV-cache vs full-pass gap
    assert all(b["mean"] <= b["max"] for b in bounds.values())
