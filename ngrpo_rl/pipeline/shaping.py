"""Reward shaping applied to verifier rewards before the advantage estimator."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def overlong_penalty(
    lengths: Tensor, *, max_new_tokens: int, overlong_buffer: int, penalty_factor: float = 1.0
) -> Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13), added to the reward.

    With L_max = ``max_new_tokens`` and L_cache = ``overlong_buffer``, per response length ``len``:
    0 if len <= L_max - L_cache; ((L_max - L_cache) - len) / L_cache * penalty_factor in between,
    reaching -penalty_factor at len == L_max; -penalty_factor beyond.

    Shapes: lengths (any shape, response lengths in tokens) -> penalty of the same shape, in the
    dtype of ``lengths`` if floating, else the default float dtype.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if (
        isinstance(overlong_buffer, bool)
        or not isinstance(overlong_buffer, int)
        or not 1 <= overlong_buffer <= max_new_tokens
    ):
        raise ValueError(
            f"overlong_buffer must be an int in [1, max_new_tokens={max_new_tokens}], got {overlong_buffer!r}"
        )
    if not (penalty_factor >= 0 and math.isfinite(penalty_factor)):
        raise ValueError(f"penalty_factor must be a finite number >= 0, got {penalty_factor!r}")
    dtype = lengths.dtype if lengths.is_floating_point() else torch.get_default_dtype()
    lengths = lengths.to(dtype)
    if bool((lengths < 0).any()):
        raise ValueError("lengths must be >= 0")
    expected = max_new_tokens - overlong_buffer
    fraction = torch.clamp((expected - lengths) / overlong_buffer, min=-1.0, max=0.0)
    return fraction * penalty_factor
