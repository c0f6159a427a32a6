"""Prompt templates: how a problem statement becomes the text the model continues.

``plain`` suits the bundled tiny character-level model: the problem followed by ``=``; the model
answers with the number and stops. ``chat`` uses the tokenizer's own chat template with the
instruction of the NGRPO paper's prompts to reason step by step and put the final answer in
``\\boxed{}``. ``boxed`` gives the same instruction without a chat template, for base models.
Register more with ``@templates.register("name")``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ngrpo_rl.registry import Registry

PromptTemplate = Callable[[str, Optional[Any]], str]
"""``template(problem, tokenizer) -> prompt``; ``tokenizer`` may be None for templates that need none."""

templates: Registry[PromptTemplate] = Registry("prompt template")

BOXED_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


@templates.register("plain")
def plain_template(problem: str, tokenizer: Optional[Any] = None) -> str:
    """``"12+7"`` -> ``"12+7="``: the model writes the answer right after the equals sign."""
    return f"{problem}="


@templates.register("chat")
def chat_template(problem: str, tokenizer: Optional[Any] = None) -> str:
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
def boxed_template(problem: str, tokenizer: Optional[Any] = None) -> str:
    """The problem, then the ``\\boxed{}`` instruction, as plain text (no chat template needed)."""
    return f"{problem}\n{BOXED_INSTRUCTION}\n"


def render(name: str, problem: str, tokenizer: Optional[Any] = None) -> str:
    """Applies the template registered as ``name``."""
    return templates.get(name)(problem, tokenizer)
