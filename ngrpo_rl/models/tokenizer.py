"""A character-level tokenizer built in code, and the one convention for encoding prompts.

The tiny default model reads one token per character, so its tokenizer needs no vocabulary file
and no download: :func:`char_tokenizer` builds it with ``tokenizers`` and wraps it as a
``transformers.PreTrainedTokenizerFast`` that saves and loads like any Hugging Face tokenizer.

Special tokens, in this order (ids 0-3): ``<pad>``, ``<s>`` (bos), ``</s>`` (eos), ``<unk>``;
then newline and the 95 printable ASCII characters. Anything else maps to ``<unk>``.

Encoding convention (shared by the warm start, generation and the learner):

* a prompt is encoded with the tokenizer's special tokens, which for this tokenizer means one
  ``<s>`` in front (as Llama tokenizers do): :func:`encode_prompts`. A prompt whose text already
  starts with the bos string (a rendered chat template) is encoded without adding another;
* a completion is encoded without special tokens and ends with eos: :func:`encode_completion`.

The learner never re-tokenizes text: it uses the token ids that generation returns, so the three
stages agree by construction.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)

# Newline, then printable ASCII: digits, letters, punctuation (+-*/=().,\{}^_$#:?!'" ...) and space.
CHARACTERS = "\n" + "".join(c for c in string.printable if c not in "\t\r\x0b\x0c\n")


def char_tokenizer() -> PreTrainedTokenizerFast:
    """The character-level tokenizer of the tiny default model (left padding, bos added to prompts).

    Round-trips through ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` without network.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + tuple(CHARACTERS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # One piece per character (newlines included), then the pieces are joined back without spaces.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN])],
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, with the tokenizer's special tokens (bos) unless present.

    The prompts are encoded in two batched calls (those that start with bos and the rest), which
    for a fast tokenizer costs a fraction of one call per prompt.
    """
    bos = tokenizer.bos_token
    starts_with_bos = [bool(bos) and prompt.startswith(bos) for prompt in prompts]
    encoded: list[list[int]] = [[] for _ in prompts]
    for has_bos in (False, True):
        indices = [index for index, flag in enumerate(starts_with_bos) if flag == has_bos]
        if indices:
            batch = tokenizer([prompts[index] for index in indices], add_special_tokens=not has_bos)
            for index, ids in zip(indices, batch["input_ids"]):
                encoded[index] = list(ids)
    return encoded


def encode_completions(
    tokenizer: PreTrainedTokenizerBase, completions: Sequence[str]
) -> list[list[int]]:
    """Token ids of target completions: each text without special tokens, then eos."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; set tokenizer.eos_token first")
    if not completions:
        return []
    batch = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    return [list(ids) + [tokenizer.eos_token_id] for ids in batch]


def encode_completion(tokenizer: PreTrainedTokenizerBase, completion: str) -> list[int]:
    """Token ids of a target completion: its text without special tokens, then eos."""
    return encode_completions(tokenizer, [completion])[0]
