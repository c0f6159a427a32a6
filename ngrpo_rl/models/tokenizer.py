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
    """Token ids of each prompt, with the tokenizer's special tokens (bos) unless present."""
    bos = tokenizer.bos_token
    encoded = []
    for prompt in prompts:
        add_special = not (bos and prompt.startswith(bos))
        encoded.append(list(tokenizer(prompt, add_special_tokens=add_special)["input_ids"]))
    return encoded


def encode_completion(tokenizer: PreTrainedTokenizerBase, completion: str) -> list[int]:
    """Token ids of a target completion: its text without special tokens, then eos."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; set tokenizer.eos_token first")
    ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id]
