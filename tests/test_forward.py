"""The teacher-forced forward pass: chunked log-probs, the entropy from the same normaliser,
micro-batches cut to their own width, and one pass over a prompt that several rows share. Each
fast path against the plain computation, in float64, to float64 rounding."""

from __future__ import annotations

import pytest
import torch

from ngrpo_rl.losses import entropy_from_logits
from ngrpo_rl.models import build_tiny_model, char_tokenizer
from ngrpo_rl.models.forward import (
    logprobs_from_logits,
    pad_batch,
    response_logits,
    response_logprobs,
    select_rows,
    token_logprobs,
)

# Two groups sharing a prompt (rows 0-2 and 3-4), one prompt alone; responses of 1 to 4 tokens.
PROMPTS = [[1, 6, 77, 7], [1, 6, 77, 7], [1, 6, 77, 7], [1, 9, 85], [1, 9, 85], [1, 12, 8, 85, 4]]
RESPONSES = [[8, 2], [7, 7, 9, 2], [5], [7, 2], [11, 12, 13], [3, 3, 2]]


@pytest.fixture(scope="module")
def model():
    tokenizer = char_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=0).double()
    return model.train()


@pytest.fixture(scope="module")
def batch(model):
    return pad_batch(PROMPTS, RESPONSES, char_tokenizer().pad_token_id)


def plain_logits(model, batch) -> torch.Tensor:
    """The reference: the whole sequence through the model, nothing shared, nothing cut."""
    response_length = batch["response_mask"].shape[1]
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
    ).logits
    return logits[:, -(response_length + 1) : -1]


def gradients(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(got, want, relative):
    """Equal to ``relative`` times each parameter's largest gradient entry."""
    assert got.keys() == want.keys() and want
    for name in want:
        scale = float(want[name].abs().max())
        torch.testing.assert_close(got[name], want[name], atol=relative * scale, rtol=0, msg=name)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, None])
def test_chunked_logprobs_and_entropy_equal_the_whole_computation(chunk_size):
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(3, 7, 50, generator=generator, dtype=torch.float64)).requires_grad_()
    tokens = torch.randint(0, 50, (3, 7), generator=generator)
    logprobs, entropy = logprobs_from_logits(logits, tokens, 0.7, return_entropy=True, chunk_size=chunk_size)
    want_logprobs = token_logprobs(logits, tokens, 0.7)
    want_entropy = entropy_from_logits(logits / 0.7)
    assert logprobs.dtype == entropy.dtype == torch.float64
    torch.testing.assert_close(logprobs, want_logprobs, atol=1e-12, rtol=0)
    torch.testing.assert_close(entropy, want_entropy, atol=1e-12, rtol=0)
    # The gradient too, through the checkpointed chunks.
    weights = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    (got,) = torch.autograd.grad(((logprobs + entropy) * weights).sum(), logits)
    (want,) = torch.autograd.grad(((want_logprobs + want_entropy) * weights).sum(), logits)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_the_entropy_metric_is_the_entropy_without_a_graph():
    logits = torch.randn(2, 5, 30, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 30, (2, 5))
    logprobs, metric = logprobs_from_logits(logits, tokens, return_entropy=True, entropy_grad=False, chunk_size=2)
    _, bonus = logprobs_from_logits(logits, tokens, return_entropy=True, entropy_grad=True, chunk_size=2)
    assert logprobs.requires_grad and not metric.requires_grad and bonus.requires_grad
    torch.testing.assert_close(metric, bonus.detach(), atol=0, rtol=0)
    torch.testing.assert_close(metric, entropy_from_logits(logits.detach()), atol=1e-12, rtol=0)
    none_asked = logprobs_from_logits(logits, tokens)[1]
    assert none_asked is None


def test_masked_vocabulary_entries_add_nothing_to_the_entropy():
    logits = torch.tensor([[[0.0, 0.0, float("-inf"), float("-inf")]]], requires_grad=True)
    _, entropy = logprobs_from_logits(logits, torch.tensor([[1]]), return_entropy=True)
    assert entropy.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    entropy.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_half_precision_logits_are_upcast_and_float64_kept():
    logits = torch.randn(2, 3, 10)
    tokens = torch.randint(0, 10, (2, 3))
    half, _ = logprobs_from_logits(logits.bfloat16(), tokens)
    assert half.dtype == torch.float32
    assert logprobs_from_logits(logits.double(), tokens)[0].dtype == torch.float64
    with pytest.raises(ValueError, match="chunk_size"):
        logprobs_from_logits(logits, tokens, chunk_size=0)


def test_shared_prompt_passes_give_the_plain_logits_and_gradients(model, batch):
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape),
                                           with_kwargs=True)
    try:
        shared = response_logits(model, batch)
    finally:
        hook.remove()
    # One pass over the 3 distinct prompts, one over the responses but their last token.
    assert calls == [(3, 5), (6, 3)]
    want = plain_logits(model, batch)
    torch.testing.assert_close(shared, want, atol=1e-12, rtol=0)
    weights = torch.randn(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # Qwen2's RMSNorm computes in float32 even in a float64 model; a shared prompt sums its rows'
    # gradients before the norm's backward, the plain pass after it: float32 rounding apart.
    assert_same_gradients(gradients(model, (shared * weights).sum()),
                          gradients(model, (plain_logits(model, batch) * weights).sum()), relative=1e-6)


def test_sharing_can_be_turned_off_and_is_skipped_where_it_cannot_help(model, batch):
    calls = []
    hook = model.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        unshared = response_logits(model, batch, share_prompts=False)
        assert len(calls) == 1
        distinct = {k: v[[0, 3, 5]] for k, v in batch.items()}  # no prompt repeats
        response_logits(model, distinct)
        assert len(calls) == 2
        single = pad_batch(PROMPTS[:3], [[8], [5], [7]], char_tokenizer().pad_token_id)
        one_token = response_logits(model, single)  # R = 1: the prompt pass alone predicts it
        assert len(calls) == 3
    finally:
        hook.remove()
    torch.testing.assert_close(unshared, plain_logits(model, batch), atol=1e-12, rtol=0)
    torch.testing.assert_close(one_token, plain_logits(model, single), atol=1e-12, rtol=0)


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")
def test_gradient_checkpointing_runs_rows_whole():
    """Checkpointed layers drop the KV cache, so sharing a prompt pass would lose the prompt."""
    tokenizer = char_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=0).double().train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch = pad_batch(PROMPTS, RESPONSES, tokenizer.pad_token_id)
    calls = []
    hook = model.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        logits = response_logits(model, batch)
    finally:
        hook.remove()
    assert len(calls) == 1
    torch.testing.assert_close(logits, plain_logits(model, batch), atol=1e-12, rtol=0)


def test_a_micro_batch_cut_to_its_own_width_gives_the_same_logprobs(model, batch):
    rows = torch.tensor([3, 0])  # prompts of 3 and 4 tokens, responses of 2: two columns each way cut
    cut = select_rows(batch, rows, prompt_width=4, response_width=2)
    assert cut["input_ids"].shape == (2, 6) and cut["response_mask"].shape == (2, 2)
    assert cut["position_ids"].tolist() == [[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]
    with torch.no_grad():
        whole = response_logprobs(model, batch, 0.8, share_prompts=False)
        part, entropy = response_logprobs(model, cut, 0.8, return_entropy=True)
    torch.testing.assert_close(part, whole[rows, :2], atol=1e-12, rtol=0)
    assert torch.all(whole[rows, 2:] == 0)
    assert entropy.shape == (2, 2)
    with pytest.raises(ValueError, match="widths"):
        select_rows(batch, rows, prompt_width=9, response_width=2)
