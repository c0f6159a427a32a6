"""What a standalone run writes to TensorBoard, and the shape of RLlib's result dict.

Under Ray Tune, Tune's own logger writes the scalars (with the swept fields as HParams), so the
writer here is opened only for standalone runs or when ``tensorboard_dir`` is set explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ngrpo_rl.batch import TrainingBatch

PASS_AT_K_CURVE_TAG = "evaluation/pass_at_k_curve"
"""The image tag of the held-out pass@k curve drawn at each evaluation."""


class TensorBoardWriter:
    """Scalars of every iteration, a table of example completions and, at each evaluation, the
    pass@k curve as an image, in one log directory."""

    def __init__(self, logdir: str, log_completions: int = 0) -> None:
        from tensorboardX import SummaryWriter

        print(f"TensorBoard: tensorboard --logdir {logdir}")
        self.writer = SummaryWriter(logdir)
        self.log_completions = log_completions

    def scalars(self, results: dict[str, Any], step: int) -> None:
        """Every finite number of ``results`` (flat keys such as ``clip/upper_frac``) at ``step``."""
        for key, value in results.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def completions(self, batch: TrainingBatch, step: int) -> None:
        """The first ``log_completions`` responses with their reward and advantage, as markdown."""
        if not self.log_completions or batch.advantages is None:
            return
        rows = ["| problem | gold | completion | reward | advantage |", "|---|---|---|---|---|"]
        for i in range(min(self.log_completions, len(batch))):
            text = batch.texts[i].replace("|", "\\|").replace("\n", " ")[:200]
            advantage = batch.advantages[i]
            if advantage.dim():  # token-level: the mean over the response
                advantage = advantage[: len(batch.response_token_ids[i])].mean()
            rows.append(
                f"| {batch.problem_ids[i]} | {batch.golds[i]} | {text} | "
                f"{float(batch.rewards[i]):.2f} | {float(advantage):+.3f} |"
            )
        self.writer.add_text("samples/completions", "\n".join(rows), step)

    def pass_at_k_curve(self, curve: Mapping[int, float], step: int) -> None:
        """The held-out pass@k curve ``{k: pass@k}`` (x: log2 k) as an image (TensorBoard's Images
        tab), so that curves from different iterations can be compared, not only their AUC."""
        from ngrpo_rl.plots import pass_at_k_figure

        figure = pass_at_k_figure({f"iteration {step}": curve}, title="held-out pass@k")
        self.writer.add_figure(PASS_AT_K_CURVE_TAG, figure, step, close=True)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"clip/upper_frac": x}`` -> ``{"clip": {"upper_frac": x}}`` (RLlib-style result dict)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, tail = key.partition("/")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    return nested
