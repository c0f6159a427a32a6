"""Figures of evaluation results: pass@k curves and heatmaps, written as PNG files.

matplotlib is imported inside the functions (with the Agg backend, no display needed), so that
importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def pass_at_k_figure(curves: Mapping[str, Mapping[int, float]], title: str = "") -> Any:
    """A matplotlib figure of pass@k against log2 k, one line per label; the legend gives each
    curve's Pass@k AUC where it has at least two ks. The caller closes the figure."""
    from ngrpo_rl.metrics import pass_at_k_auc

    if not curves:
        raise ValueError("no pass@k curves to plot")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    all_ks: set[int] = set()
    for label, curve in curves.items():
        ks = sorted(int(k) for k in curve)
        if not ks or ks[0] < 1:
            raise ValueError(f"curve {label!r}: the ks must be >= 1, got {ks}")
        values = [100.0 * float(curve[k]) for k in ks]
        legend = label
        if len(ks) >= 2:
            legend = f"{label} (AUC {pass_at_k_auc({k: curve[k] for k in ks}):.1f})"
        axes.plot([math.log2(k) for k in ks], values, marker="o", label=legend)
        all_ks.update(ks)
    ticks = sorted(all_ks)
    axes.set_xticks([math.log2(k) for k in ticks], [str(k) for k in ticks])
    axes.set_xlabel("k (log2 scale)")
    axes.set_ylabel("pass@k (%)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure


def plot_pass_at_k_curves(
    curves: Mapping[str, Mapping[int, float]], path: str | Path, title: str = ""
) -> Path:
    """Draws the pass@k curves ``{label: {k: pass@k}}`` (pass@k as fractions in [0, 1]) on one
    PNG at ``path``: x is log2 k, y is pass@k in percent, the legend gives each curve's AUC.

    Returns the path written.
    """
    return _save(pass_at_k_figure(curves, title), path)


def plot_heatmap(
    values: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    row_name: str = "",
    col_name: str = "",
    fmt: str = "{:.1f}",
) -> Path:
    """Draws a table of numbers (``values[row][col]``) as an annotated heatmap PNG at ``path``.

    Args:
        values: one row per row label, one value per column label (NaN leaves a cell blank).
        row_labels / col_labels: the tick labels of the rows (y axis) and columns (x axis).
        path: the PNG file to write (its folder is created).
        title / row_name / col_name: the figure title and the axis names.
        fmt: how each cell's number is written on it.

    Returns the path written.
    """
    import numpy as np

    grid = np.asarray(values, dtype=float)
    if grid.ndim != 2 or grid.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"values of shape {grid.shape} do not match {len(row_labels)} row labels x "
            f"{len(col_labels)} column labels"
        )
    plt = _pyplot()
    figure, axes = plt.subplots(
        figsize=(max(4.0, 1.0 + 0.9 * len(col_labels)), max(3.0, 1.0 + 0.6 * len(row_labels)))
    )
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    axes.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for row in range(grid.shape[0]):
        for col in range(grid.shape[1]):
            value = grid[row, col]
            if np.isfinite(value):
                color = "black" if value > middle else "white"
                axes.text(col, row, fmt.format(value), ha="center", va="center", color=color)
    axes.set_xlabel(col_name)
    axes.set_ylabel(row_name)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure: Any, path: str | Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # No metadata: the same data gives the same bytes.
        figure.savefig(path, format="png", dpi=120, metadata={"Software": None})
    finally:
        plt.close(figure)
    return path
