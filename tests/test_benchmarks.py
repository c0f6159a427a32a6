"""The benchmark runner: every benchmark it names exists with a ``run(quick)``, and the table marks
missed targets (the figures themselves are measured by hand: ``benchmarks/run_all.py``)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_named_by_the_runner_defines_run_with_quick():
    run_all = load_run_all()
    for name, (file, keys) in run_all.BENCHMARKS.items():
        tree = ast.parse((ROOT / "benchmarks" / file).read_text())
        runs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
        assert runs, f"benchmarks/{file} ({name}) has no run()"
        arguments = [a.arg for a in runs[0].args.args]
        assert arguments[:1] == ["quick"], f"benchmarks/{file}: run's first argument must be quick"
        assert keys, name


def test_the_table_marks_missed_and_unmeasured_targets():
    run_all = load_run_all()
    table = run_all.format_table({"step_time_ratio_vs_trl": 0.9, "loop_vs_generate": 0.95,
                                  "stage_share": {"learn": 0.5}})
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert rows["step_time_ratio_vs_trl"].endswith("NO")
    assert rows["loop_vs_generate"].endswith("yes")
    assert rows["verifier_answers_per_s"].endswith("not measured")
    assert "share of step: learn  50%" in table
