"""Generation: the HF backend, the shared teacher-forced log-probs, and the Ray worker pool.

All on tiny models (hidden 32-64, 1-2 layers). The untrained model samples random characters and
rarely stops; the "briefly trained" one has seen a few seconds of sums, so it usually writes a
short answer and eos, which is what the truncation tests need.
"""

from __future__ import annotations

import math

import pytest
import torch

from ngrpo_rl.generation import (
    GenerationOutput,
    HFBackend,
    SamplingParams,
    backends,
    create_backend,
    derive_seed,
    pad_batch,
    response_logprobs,
    token_logprobs,
)
from ngrpo_rl.models import (
    build_tiny_model,
    char_tokenizer,
    encode_prompts,
    load_model,
    save_model,
    warm_start,
)
from ngrpo_rl.registry import UnknownNameError

PROMPTS = ["1+2=", "33+44-5=", "7=", "12*3="]


@pytest.fixture(scope="module")
def untrained_dir(tmp_path_factory):
    tokenizer = char_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=0)
    return save_model(model, tokenizer, tmp_path_factory.mktemp("untrained") / "model")


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    tokenizer = char_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=4, seed=0)
    examples = [(f"{a}+{b}=", str(a + b)) for a in range(10) for b in range(10)]
    warm_start(model, tokenizer, examples, steps=40, batch_size=32, lr=3e-3, progress=False)
    return save_model(model, tokenizer, tmp_path_factory.mktemp("trained") / "model")


@pytest.fixture(scope="module")
def backend(untrained_dir):
    return HFBackend(untrained_dir, batch_size=64)


def check_invariants(output: GenerationOutput, backend: HFBackend, params: SamplingParams) -> None:
    eos = set(backend.eos_token_ids)
    for tokens, logprobs, truncated in zip(
        output.response_token_ids, output.response_logprobs, output.truncated
    ):
        assert 1 <= len(tokens) <= params.max_new_tokens
        assert len(logprobs) == len(tokens)
        assert all(lp <= 0.0 and math.isfinite(lp) for lp in logprobs)
        assert not any(t in eos for t in tokens[:-1])  # nothing after the first eos
        assert truncated == (tokens[-1] not in eos)
        if truncated:
            assert len(tokens) == params.max_new_tokens
    texts = backend.tokenizer.batch_decode(output.response_token_ids, skip_special_tokens=True)
    assert output.texts == texts


# --- sampling parameters and outputs -------------------------------------------------------------


def test_sampling_params_validation():
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="n "):
        SamplingParams(n=0)
    assert SamplingParams(greedy=True, temperature=0.0).logprob_temperature == 1.0
    assert SamplingParams(temperature=0.6).logprob_temperature == 0.6


def test_generation_output_concat_and_checks():
    a = GenerationOutput([[1]], [[5, 2]], [[-0.1, -0.2]], ["x"], [False])
    b = GenerationOutput([[1, 4]], [[6]], [[-1.0]], ["y"], [True])
    joined = GenerationOutput.concat([a, b])
    assert (
        joined.texts == ["x", "y"] and joined.prompt_token_ids == [[1], [1, 4]] and len(joined) == 2
    )
    assert len(GenerationOutput.concat([])) == 0
    with pytest.raises(ValueError, match="one entry per row"):
        GenerationOutput([[1]], [[5]], [[-0.1]], ["x", "y"], [False])
    with pytest.raises(ValueError, match="log-probs"):
        GenerationOutput([[1]], [[5, 2]], [[-0.1]], ["x"], [False])


def test_backend_registry():
    assert "hf" in backends.available() and backends.get("hf") is HFBackend
    with pytest.raises(UnknownNameError, match="available: hf"):
        create_backend("vllm-typo", "/nowhere")


def test_derive_seed():
    assert derive_seed(3, 0) == derive_seed(3, 0)
    assert len({derive_seed(3, i) for i in range(100)} | {derive_seed(4, 0)}) == 101


# --- the HF backend ------------------------------------------------------------------------------


def test_shapes_order_and_n_samples(backend):
    params = SamplingParams(n=3, max_new_tokens=5, seed=0)
    output = backend.generate(PROMPTS, params)
    assert len(output) == len(PROMPTS) * 3
    expected_prompts = encode_prompts(backend.tokenizer, PROMPTS)
    for row in range(len(output)):
        assert output.prompt_token_ids[row] == expected_prompts[row // 3]
    check_invariants(output, backend, params)
    assert backend.generate([], params).texts == []


def test_batch_size_splits_without_changing_layout(untrained_dir):
    small = HFBackend(untrained_dir, batch_size=2)  # one prompt x 2 samples per generate call
    params = SamplingParams(n=2, max_new_tokens=4, seed=1)
    output = small.generate(PROMPTS, params)
    assert [ids[1:] for ids in output.prompt_token_ids[::2]] == [
        ids[1:] for ids in encode_prompts(small.tokenizer, PROMPTS)
    ]
    check_invariants(output, small, params)


def test_truncation_flags(trained_dir):
    backend = HFBackend(trained_dir)
    prompts = [f"{a}+{b}=" for a in range(3) for b in range(4)]
    stopped = backend.generate(prompts, SamplingParams(n=2, max_new_tokens=8, seed=0))
    check_invariants(stopped, backend, SamplingParams(max_new_tokens=8))
    assert sum(stopped.truncated) < len(stopped) // 2  # it has learned to stop
    cut = backend.generate(prompts, SamplingParams(n=2, max_new_tokens=1, seed=0))
    check_invariants(cut, backend, SamplingParams(max_new_tokens=1))
    assert all(cut.truncated) or sum(cut.truncated) > len(cut) // 2
    greedy = backend.generate(["1+2=", "4+4="], SamplingParams(greedy=True, max_new_tokens=8))
    assert greedy.response_token_ids[0][-1] == backend.tokenizer.eos_token_id


def test_seeded_calls_are_reproducible_and_isolated(backend):
    params = SamplingParams(n=2, max_new_tokens=6, seed=123)
    global_state = torch.get_rng_state()
    first = backend.generate(PROMPTS, params)
    assert torch.equal(global_state, torch.get_rng_state())  # the caller's RNG is untouched
    torch.manual_seed(999)  # and does not influence the samples either
    assert backend.generate(PROMPTS, params) == first
    assert backend.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=6, seed=124)) != first
    unseeded = SamplingParams(n=2, max_new_tokens=6)
    assert backend.generate(PROMPTS, unseeded) != backend.generate(
        PROMPTS, unseeded
    )  # stream advances


def test_backend_seed_fixes_its_unseeded_stream(untrained_dir):
    params = SamplingParams(n=2, max_new_tokens=6)
    a = HFBackend(untrained_dir, seed=7).generate(PROMPTS, params)
    b = HFBackend(untrained_dir, seed=7).generate(PROMPTS, params)
    c = HFBackend(untrained_dir, seed=8).generate(PROMPTS, params)
    assert a == b and a != c


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(n=3, max_new_tokens=7, temperature=1.0, seed=0),
        SamplingParams(n=3, max_new_tokens=7, temperature=0.6, seed=1),
        SamplingParams(n=2, max_new_tokens=7, temperature=1.3, top_p=0.8, seed=2),
        SamplingParams(n=1, max_new_tokens=7, greedy=True),
    ],
    ids=["t1", "t0.6", "t1.3-top_p0.8", "greedy"],
)
@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_logprobs_equal_teacher_forced_recomputation(which, params, request):
    """old_logp from generation == the learner's logp from the same weights (ratio exactly 1)."""
    path = request.getfixturevalue(f"{which}_dir")
    backend = HFBackend(path)
    prompts = ["1+2=", "33+44-5=", "7=", "98-76=", "5*5="]  # different lengths: left padding
    output = backend.generate(prompts, params)
    model, tokenizer = load_model(path)
    batch = pad_batch(output.prompt_token_ids, output.response_token_ids, tokenizer.pad_token_id)
    with torch.no_grad():
        recomputed = response_logprobs(model, batch, temperature=params.logprob_temperature)
    for row, logprobs in enumerate(output.response_logprobs):
        n = len(logprobs)
        assert torch.allclose(recomputed[row, :n], torch.tensor(logprobs), atol=1e-4, rtol=0), row
        assert torch.all(recomputed[row, n:] == 0)


def test_recorded_logprobs_are_token_logprobs_of_each_steps_logits():
    """The recorder takes each step's normaliser at once and the sampled token's logit a step later,
    from the same (uncopied) logits: bit for bit what the learner's formula gives."""
    from ngrpo_rl.generation.hf import SampledTokenLogprobs

    generator = torch.Generator().manual_seed(0)
    steps = [3 * torch.randn(3, 20, generator=generator) for _ in range(4)]
    tokens = torch.randint(0, 20, (3, 4), generator=generator)
    recorder = SampledTokenLogprobs(0.7)
    input_ids = torch.zeros(3, 2, dtype=torch.long)  # the prompt
    for step, scores in enumerate(steps):
        assert recorder(input_ids, scores) is scores  # passed on untouched
        input_ids = torch.cat([input_ids, tokens[:, step : step + 1]], dim=1)
    recorded = recorder.finish(tokens)
    expected = torch.stack([token_logprobs(s, tokens[:, i], 0.7) for i, s in enumerate(steps)], dim=1)
    assert torch.equal(recorded, expected)
    with pytest.raises(RuntimeError, match="recorded"):
        SampledTokenLogprobs(1.0).finish(tokens)


def test_prompts_are_encoded_once_per_text(untrained_dir, monkeypatch):
    from ngrpo_rl.generation import hf

    backend = HFBackend(untrained_dir)
    encoded: list[list[str]] = []
    real = hf.encode_prompts
    monkeypatch.setattr(hf, "encode_prompts", lambda tokenizer, texts: encoded.append(texts) or real(tokenizer, texts))
    texts = PROMPTS + PROMPTS[:2]
    first = backend.encode(texts)
    assert first == real(backend.tokenizer, texts) and encoded == [PROMPTS]
    first[0].append(99)  # the caller's lists are its own
    assert backend.encode(PROMPTS[::-1]) == real(backend.tokenizer, PROMPTS[::-1]) and len(encoded) == 1
    # The cache is bounded and keeps the texts used last.
    monkeypatch.setattr(hf, "PROMPT_CACHE_SIZE", 2)
    backend.encode(["9+9=", PROMPTS[0]])
    assert list(backend._prompt_ids) == ["9+9=", PROMPTS[0]]
    output = backend.generate(PROMPTS[:1], SamplingParams(n=2, max_new_tokens=3, seed=0))
    assert output.prompt_token_ids == real(backend.tokenizer, PROMPTS[:1]) * 2


def test_load_state_dict_changes_outputs(untrained_dir):
    backend = HFBackend(untrained_dir)
    params = SamplingParams(greedy=True, max_new_tokens=6)
    before = backend.generate(PROMPTS, params)
    model, _ = load_model(untrained_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    backend.load_state_dict(model.state_dict())
    after = backend.generate(PROMPTS, params)
    assert after.response_logprobs != before.response_logprobs
    # A state dict without the tied lm_head, in another dtype, also loads.
    state = {
        k: v.to(torch.bfloat16) for k, v in model.state_dict().items() if k != "lm_head.weight"
    }
    backend.load_state_dict(state)
    assert backend.model.lm_head.weight.dtype == torch.float32
    with pytest.raises(KeyError, match="unknown"):
        backend.load_state_dict({"not.a.weight": torch.zeros(1)})


# --- the shared teacher-forced computation -------------------------------------------------------


def test_pad_batch_layout():
    batch = pad_batch([[1, 5], [1, 6, 7]], [[8, 2], [9]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[0, 1, 5, 8, 2], [1, 6, 7, 9, 0]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert batch["position_ids"].tolist() == [[0, 0, 1, 2, 3], [0, 1, 2, 3, 3]]
    assert batch["response_mask"].tolist() == [[1, 1], [1, 0]]
    with pytest.raises(ValueError, match="at least one token"):
        pad_batch([[1]], [[]], 0)
    with pytest.raises(ValueError, match="prompts"):
        pad_batch([[1]], [[2], [3]], 0)


def test_response_logprobs_entropy_and_gradients():
    tokenizer = char_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2)
    batch = pad_batch([[1, 6, 77, 7, 85], [1, 9, 85]], [[8, 2], [7, 7, 2]], tokenizer.pad_token_id)
    logprobs, entropy = response_logprobs(model, batch, temperature=0.7, return_entropy=True)
    assert logprobs.shape == entropy.shape == (2, 3)
    assert logprobs[0, 2] == 0 and entropy[0, 2] == 0  # masked
    # Against a plain full forward pass, row by row, without padding.
    for row, (prompt, response) in enumerate(
        [([1, 6, 77, 7, 85], [8, 2]), ([1, 9, 85], [7, 7, 2])]
    ):
        ids = torch.tensor([prompt + response])
        logits = model(ids).logits[0, len(prompt) - 1 : -1] / 0.7
        expected = torch.log_softmax(logits, -1)
        assert torch.allclose(
            logprobs[row, : len(response)], expected[range(len(response)), response], atol=1e-5
        )
        expected_entropy = -(expected.exp() * expected).sum(-1)
        assert torch.allclose(entropy[row, : len(response)], expected_entropy, atol=1e-5)
    (logprobs.sum() + entropy.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


# --- the Ray worker pool -------------------------------------------------------------------------


def test_pool_bundles():
    from ngrpo_rl.generation.workers import GenerationPool

    assert GenerationPool.bundle(2, 1) == [{"CPU": 1.0}, {"CPU": 1.0}]
    assert GenerationPool.bundle(1, 2, num_gpus_per_worker=1) == [{"CPU": 2.0, "GPU": 1.0}]
    assert GenerationPool.bundle(0, 1) == []


def test_pool_without_workers_needs_no_ray(untrained_dir):
    from ngrpo_rl.generation.workers import GenerationPool, _split

    pool = GenerationPool("hf", untrained_dir, num_workers=0, backend_kwargs={"seed": 3})
    params = SamplingParams(n=2, max_new_tokens=5, seed=11)
    assert pool.generate(PROMPTS, params) == pool.generate(PROMPTS, params)
    assert pool.actors == [] and pool.num_restarts == 0
    pool.shutdown()
    assert _split(list("abcde"), 3) == [["a", "b"], ["c", "d"], ["e"]]
    assert _split(list("ab"), 3) == [["a"], ["b"], []]


def assert_same_samples(got: GenerationOutput, want: GenerationOutput) -> None:
    """The same samples; log-probs to float error only, since an actor computes with one thread
    and the driver with several (a reduction may be summed in another order: 1 in 4 calls of 8
    rows differ in some last bit)."""
    assert got.prompt_token_ids == want.prompt_token_ids
    assert got.response_token_ids == want.response_token_ids
    assert got.texts == want.texts and got.truncated == want.truncated
    for row, expected in zip(got.response_logprobs, want.response_logprobs):
        torch.testing.assert_close(torch.tensor(row), torch.tensor(expected), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_pool_with_one_actor_matches_in_process(ray_cluster, untrained_dir):
    from ngrpo_rl.generation.workers import GenerationPool

    kwargs = {"seed": 5, "batch_size": 16}
    local = GenerationPool("hf", untrained_dir, num_workers=0, backend_kwargs=kwargs)
    remote = GenerationPool("hf", untrained_dir, num_workers=1, backend_kwargs=kwargs)
    try:
        seeded = SamplingParams(n=2, max_new_tokens=5, seed=42)
        assert_same_samples(remote.generate(PROMPTS, seeded), local.generate(PROMPTS, seeded))
        unseeded = SamplingParams(n=2, max_new_tokens=5)
        assert_same_samples(remote.generate(PROMPTS, unseeded), local.generate(PROMPTS, unseeded))

        # Weight sync reaches the actor: both pools still agree after new weights.
        model, _ = load_model(untrained_dir)
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(3.0)
        greedy = SamplingParams(greedy=True, max_new_tokens=5)
        before = remote.generate(PROMPTS, greedy)
        local.sync_weights(model.state_dict())
        remote.sync_weights(model.state_dict())
        after = remote.generate(PROMPTS, greedy)
        assert_same_samples(after, local.generate(PROMPTS, greedy))
        assert after.response_logprobs != before.response_logprobs

        # A killed actor is replaced, gets the synced weights, and the chunk is rerun.
        ray_cluster.kill(remote.actors[0])
        recovered = remote.generate(PROMPTS, seeded)
        assert remote.num_restarts == 1
        assert_same_samples(recovered, local.generate(PROMPTS, seeded))
    finally:
        remote.shutdown()
        local.shutdown()


def test_pool_splits_across_two_actors_in_order(ray_cluster, untrained_dir):
    from ngrpo_rl.generation.workers import GenerationPool

    pool = GenerationPool("hf", untrained_dir, num_workers=2, num_cpus_per_worker=1)
    try:
        prompts = PROMPTS + ["9-9="]
        output = pool.generate(prompts, SamplingParams(n=2, max_new_tokens=4, seed=0))
        expected = encode_prompts(char_tokenizer(), prompts)
        assert output.prompt_token_ids == [ids for ids in expected for _ in range(2)]
        with pytest.raises(RuntimeError, match="shut down"):
            pool.shutdown()
            pool.generate(prompts, SamplingParams())
    finally:
        pool.shutdown()


@pytest.mark.slow
def test_pool_recovers_from_a_worker_killed_during_generate(ray_cluster, untrained_dir):
    """The actor dies while it is generating (not before): the chunk is rerun on a new actor."""
    import threading
    import time

    from ngrpo_rl.generation.workers import GenerationPool

    pool = GenerationPool("hf", untrained_dir, num_workers=1, backend_kwargs={"batch_size": 64})
    try:
        # The untrained model rarely stops, so this call takes a while. Timing the same call once
        # (which also warms the actor up) lets the kill land halfway through the second one on a
        # machine of any speed.
        prompts = [f"{a}+{b}=" for a in range(40) for b in range(10)]
        params = SamplingParams(n=2, max_new_tokens=48, seed=9)
        started = time.perf_counter()
        pool.generate(prompts, params)
        halfway = (time.perf_counter() - started) / 2
        victim = pool.actors[0]
        killer = threading.Timer(halfway, lambda: ray_cluster.kill(victim))
        started = time.perf_counter()
        killer.start()
        output = pool.generate(prompts, params)
        elapsed = time.perf_counter() - started  # before join(): when the call itself returned
        killer.join()
        assert elapsed > halfway, "the call returned before the kill: it did not land mid-call"
        assert pool.num_restarts == 1 and pool.actors[0] is not victim
        assert len(output) == 2 * len(prompts)
        reference = GenerationPool(
            "hf", untrained_dir, num_workers=0, backend_kwargs={"batch_size": 64}
        ).generate(prompts, params)
        # The same samples; the log-probs agree to float error only, since the actor computes with
        # one thread and the driver with several (reductions are summed in another order).
        assert output.response_token_ids == reference.response_token_ids
        assert output.texts == reference.texts and output.truncated == reference.truncated
        for got, want in zip(output.response_logprobs, reference.response_logprobs):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-4, rtol=0)
    finally:
        pool.shutdown()


class _SleepyBackend(HFBackend):
    """The HF backend with vLLM's sleep / wake_up calls, recorded; generating asleep fails."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple] = []
        self.asleep: set[str] = set()

    def sleep(self, level: int = 1) -> None:
        self.calls.append(("sleep", level))
        self.asleep = {"weights", "kv_cache"}

    def wake_up(self, tags=None) -> None:
        self.calls.append(("wake_up", tuple(tags)))
        self.asleep -= set(tags)

    def generate(self, prompts, params):
        assert not self.asleep, "generate while asleep"
        return super().generate(prompts, params)

    def load_state_dict(self, state_dict) -> None:
        assert "weights" not in self.asleep, "weights loaded while asleep"
        super().load_state_dict(state_dict)


def test_a_sleeping_worker_frees_memory_between_calls_and_wakes_for_weights(untrained_dir):
    from ngrpo_rl.generation.backend import backends
    from ngrpo_rl.generation.workers import GenerationWorker

    if "test_sleepy" not in backends.available():
        backends.register("test_sleepy")(_SleepyBackend)
    worker = GenerationWorker("test_sleepy", untrained_dir, {}, torch.get_num_threads(), sleep_between_calls=True)
    params = SamplingParams(n=2, max_new_tokens=3, seed=0)
    worker.generate(["1+1="], params)
    assert worker.backend.calls == [("sleep", 1)] and worker.backend.asleep
    worker.load_state_dict(worker.backend.model.state_dict())  # the weights wake, the cache sleeps
    assert worker.backend.calls[-1] == ("wake_up", ("weights",))
    assert worker.backend.asleep == {"kv_cache"}
    worker.generate(["1+1="], params)
    assert worker.backend.calls[-2:] == [("wake_up", ("kv_cache",)), ("sleep", 1)]

    with pytest.raises(ValueError, match="cannot sleep between calls"):
        GenerationWorker("hf", untrained_dir, {}, torch.get_num_threads(), sleep_between_calls=True)
