"""What a generation backend is asked for (:class:`SamplingParams`) and what it returns."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class SamplingParams:
    """How to sample responses.

    Attributes:
        max_new_tokens: the most tokens a response may have (eos included); longer ones are cut
            and flagged ``truncated``.
        temperature: logits are divided by it before sampling (and before the log-probs are
            taken); must be > 0 unless ``greedy``.
        top_p: nucleus sampling; 1.0 samples from the whole distribution. Log-probs are always
            those of the untruncated distribution, so top_p < 1 makes them differ from the
            sampling distribution (as in verl and TRL).
        n: responses per prompt (the group size).
        seed: seeds this call; None continues the backend's own random stream.
        greedy: argmax decoding; ``temperature`` and ``top_p`` are ignored and log-probs use
            temperature 1.
    """

    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n (samples per prompt) must be >= 1, got {self.n}")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(
                f"temperature must be > 0 when sampling, got {self.temperature}; "
                "use greedy=True for argmax decoding"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def logprob_temperature(self) -> float:
        """The temperature the returned log-probs are computed at (1.0 for greedy)."""
        return 1.0 if self.greedy else self.temperature


@dataclass
class GenerationOutput:
    """Responses for a list of prompts, flattened prompt-major.

    Row ``i * n + j`` is sample ``j`` of prompt ``i``. All lists have one entry per row.

    Attributes:
        prompt_token_ids: the prompt's token ids as the model saw them (no padding).
        response_token_ids: the sampled tokens, eos included if generated, no padding.
        response_logprobs: ``log_softmax(raw_logits / temperature)`` of each sampled token (before
            top-p filtering): what the learner recomputes from the same weights (``old_logp``).
        texts: the decoded responses without special tokens.
        truncated: True where no eos came within ``max_new_tokens``.
    """

    prompt_token_ids: list[list[int]] = field(default_factory=list)
    response_token_ids: list[list[int]] = field(default_factory=list)
    response_logprobs: list[list[float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"GenerationOutput fields must have one entry per row, got {lengths}")
        for row, (tokens, logprobs) in enumerate(
            zip(self.response_token_ids, self.response_logprobs)
        ):
            if len(tokens) != len(logprobs):
                raise ValueError(
                    f"row {row}: {len(tokens)} response tokens but {len(logprobs)} log-probs"
                )

    def __len__(self) -> int:
        return len(self.texts)

    @staticmethod
    def concat(outputs: Sequence[GenerationOutput]) -> GenerationOutput:
        """Joins outputs row-wise, in order (prompt-major order is kept if each chunk is)."""
        joined = GenerationOutput()
        for output in outputs:
            for f in fields(GenerationOutput):
                getattr(joined, f.name).extend(getattr(output, f.name))
        return joined


def derive_seed(seed: int, index: int) -> int:
    """A seed for stream ``index`` derived from ``seed``; distinct indices give unrelated seeds.

    Index 0 is the first worker of a pool, so an in-process backend and a pool of one worker use
    the same stream and produce the same samples.
    """
    digest = hashlib.sha256(f"ngrpo_rl/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)
