"""``ngrpo-rl plot A.json B.json ... --out curves.png``: the pass@k curves of evaluation reports.

    ngrpo-rl plot base.json ngrpo.json grpo.json --out math500.png --title "MATH-500"

Each report written by ``ngrpo-rl eval`` becomes one curve (x: log2 k, y: pass@k in percent), its
legend entry the label (``--labels``, default the file name) and its Pass@k AUC.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "draw the pass@k curves of several ngrpo-rl eval reports on one PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of ngrpo-rl eval")
    parser.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    parser.add_argument("--title", default="", help="the figure's title")
    parser.add_argument(
        "--labels", help="comma-separated legend labels, one per report (default: the file names)"
    )


def run(args: argparse.Namespace) -> int:
    from ngrpo_rl.evaluation import EvaluationReport
    from ngrpo_rl.plots import plot_pass_at_k_curves

    labels = report_labels(args.reports, args.labels)
    curves = {}
    for label, path in zip(labels, args.reports):
        try:
            curves[label] = EvaluationReport.load(path).pass_at_k
        except OSError as error:
            raise SystemExit(f"ngrpo-rl plot: cannot read {path}: {error}") from None
        except ValueError as error:
            raise SystemExit(f"ngrpo-rl plot: {error}") from None
    print(f"wrote {plot_pass_at_k_curves(curves, args.out, args.title)}")
    return 0


def report_labels(paths: list[Path], labels: str | None) -> list[str]:
    """The given labels (one per report), else the file names without ``.json``, made unique."""
    if labels is not None:
        given = [label.strip() for label in labels.split(",")]
        if len(given) != len(paths) or len(set(given)) != len(given):
            raise SystemExit(
                f"ngrpo-rl plot: --labels needs {len(paths)} distinct labels, one per report, "
                f"got {given}"
            )
        return given
    stems = [path.stem for path in paths]
    return [stem if stems.count(stem) == 1 else str(path) for stem, path in zip(stems, paths)]
