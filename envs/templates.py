"""Prompt templates: how a problem statement becomes the text the model continues.

- ``official`` (``ngrpo_rl/Math-v0``'s default): the prompt of the NGRPO paper's released code, the
  system message "You are a helpful assistant." and the user message "<problem>\\nPlease reason
  step by step, and put your final answer within \\boxed{}.", rendered by the tokenizer's chat
  template when it has one, else as the literal Qwen ChatML string that code uses
  (:data:`OFFICIAL_CHATML`).
- ``plain`` suits the bundled tiny character-level model: the problem followed by ``=``; the model
  answers with the number and stops (``ngrpo_rl/Arithmetic-v0``'s default).
- ``chat``: the tokenizer's own chat template around the problem and the instruction
  :data:`BOXED_INSTRUCTION` ("Let's think step by step and output the final answer within
  \\boxed{}.", a common R1-Zero-style instruction, not the NGRPO paper's), no system message.
- ``boxed``: the problem and the same :data:`BOXED_INSTRUCTION` as plain text, for base models
  without a chat template.

Register more with ``@templates.register("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ngrpo_rl.registry import Registry

PromptTemplate = Callable[[str, Any | None], str]
"""``template(problem, tokenizer) -> prompt``; ``tokenizer`` may be None for templates that need none."""

templates: Registry[PromptTemplate] = Registry("prompt template")

BOXED_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
"""The instruction of ``chat`` and ``boxed`` (not the NGRPO paper's; see ``official``)."""

OFFICIAL_SYSTEM = "You are a helpful assistant."
"""The system message of the NGRPO paper's prompt."""

OFFICIAL_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction that follows the problem, on its own line, in the NGRPO paper's prompt."""

OFFICIAL_CHATML = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{input}\n"
    "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
"""The NGRPO code's ``"qwen"`` prompt, verbatim; ``{input}`` is replaced by the problem."""


@templates.register("official")
def official_template(problem: str, tokenizer: Any | None = None) -> str:
    """The NGRPO paper's prompt: a system message and "<problem>\\n" + :data:`OFFICIAL_INSTRUCTION`.

    Taken from the paper's official code, nangongrui-ngr/NGRPO at commit e7a3804,
    ``verl/utils/dataset/rl_dataset.py`` line 137 (``prompt_template_type == "qwen"``, the default
    set in ``verl/trainer/config/ppo_trainer.yaml`` line 16). That code always writes the Qwen
    ChatML string :data:`OFFICIAL_CHATML`; here a ``tokenizer`` with a chat template renders the
    same two messages its own way (``add_generation_prompt=True``; Qwen2.5's template gives exactly
    that string), and a tokenizer without one (or none) gets the string itself. The problem is
    inserted as is (no formatting, so braces in it are safe).
    """
    user = f"{problem}\n{OFFICIAL_INSTRUCTION}"
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": OFFICIAL_SYSTEM},
            {"role": "user", "content": user},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return OFFICIAL_CHATML.replace("{input}", problem)


@templates.register("plain")
def plain_template(problem: str, tokenizer: Any | None = None) -> str:
    """``"12+7"`` -> ``"12+7="``: the model writes the answer right after the equals sign."""
    return f"{problem}="


@templates.register("chat")
def chat_template(problem: str, tokenizer: Any | None = None) -> str:
    """The tokenizer's chat template around the problem and the ``\\boxed{}`` instruction."""
    content = f"{problem} {BOXED_INSTRUCTION}"
    apply = getattr(tokenizer, "apply_chat_template", None)
    if apply is None or getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "the 'chat' prompt template needs a tokenizer with a chat template; "
            "use prompt_template='plain' for models without one"
        )
    return apply([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)


@templates.register("boxed")
def boxed_template(problem: str, tokenizer: Any | None = None) -> str:
    """The problem, then the ``\\boxed{}`` instruction, as plain text (no chat template needed)."""
    return f"{problem}\n{BOXED_INSTRUCTION}\n"


def render(name: str, problem: str, tokenizer: Any | None = None) -> str:
    """Applies the template registered as ``name``."""
    return templates.get(name)(problem, tokenizer)
