"""Training curves of a study: per iteration, the fraction of all-wrong groups and of clipped tokens,
mean over seeds, one line per variant. (Pass@k curves and heatmaps come from ``ngrpo_rl.plots``.)"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

# Panel -> (history metric, y label).
PANELS: dict[str, tuple[str, str]] = {
    "all_wrong": ("groups/frac_all_incorrect", "groups all wrong"),
    "clip_upper": ("clip/upper_frac", "tokens clipped above (A > 0)"),
    "clip_lower": ("clip/lower_frac", "tokens clipped below (A < 0)"),
}


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """The trailing mean over the last ``window`` values (fewer at the start), NaN skipped."""
    out = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i - window + 1): i + 1] if not math.isnan(v)]
        out.append(math.fsum(recent) / len(recent) if recent else math.nan)
    return out


def plot_training_curves(
    steps: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, *, window: int = 5, title: str = ""
) -> Path:
    """One PNG with a panel per ``PANELS`` entry: ``steps[variant][metric]`` (a value per iteration,
    mean over seeds) smoothed by a ``window``-iteration moving average, one line per variant."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not steps:
        raise ValueError("no training curves to plot")
    figure, axes = plt.subplots(len(PANELS), 1, figsize=(7.0, 2.6 * len(PANELS)), sharex=True)
    for ax, (metric, label) in zip(axes, PANELS.values()):
        for variant, curves in steps.items():
            values = list(curves.get(metric, []))
            if values:
                ax.plot(range(1, len(values) + 1), moving_average(values, window), label=variant)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", ncol=2)
    axes[-1].set_xlabel(f"iteration (mean over seeds, moving average over {window})")
    if title:
        axes[0].set_title(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, format="png", dpi=110, metadata={"Software": None})
    finally:
        plt.close(figure)
    return path
