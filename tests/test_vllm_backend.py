"""The vLLM backend's pure parts: sampling and engine options, output conversion, weight naming.

vLLM is not installed here (no CPU wheel), so nothing in this file runs vLLM: the conversion is
checked on small fakes with the attributes of vLLM's ``RequestOutput`` / ``CompletionOutput``,
and the backend's glue on a fake engine. The two tests marked ``needs vllm`` check our keyword
arguments against the real ``vllm.SamplingParams`` / ``vllm.EngineArgs`` where vLLM is installed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import subprocess
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from ngrpo_rl.generation import SamplingParams, backends, create_backend
from ngrpo_rl.generation import vllm_backend as vb
from ngrpo_rl.generation.vllm_backend import (
    LOGPROBS_MODE,
    SYNC_METHOD,
    WORKER_EXTENSION,
    VLLMBackend,
    WeightSyncExtension,
    check_cuda_device,
    check_vllm_version,
    chunk_weight_items,
    logprobs_match_contract,
    outputs_from_vllm,
    prompt_copies,
    request_seeds,
    strip_wrapper_prefixes,
    tied_word_embeddings,
    to_vllm_sampling_kwargs,
    vllm_dtype,
    vllm_engine_kwargs,
    vllm_weight_items,
)
from ngrpo_rl.models import build_tiny_model, char_tokenizer, encode_prompts

EOS = 2  # the char tokenizer's </s>


# --- fakes with the attributes of vLLM's outputs -------------------------------------------------


@dataclass
class FakeLogprob:
    logprob: float


@dataclass
class FakeCompletion:
    token_ids: list[int]
    logprobs: list[dict[int, FakeLogprob]] | None
    finish_reason: str | None = "stop"
    text: str = ""
    index: int = 0


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletion] = field(default_factory=list)


def completion(
    tokens: list[int], values: list[float], index: int = 0, **kwargs: Any
) -> FakeCompletion:
    """A completion whose positions also list a competing token, as vLLM's top-k entries do."""
    logprobs = [
        {token: FakeLogprob(value), 99: FakeLogprob(-9.0)} for token, value in zip(tokens, values)
    ]
    return FakeCompletion(tokens, logprobs, index=index, **kwargs)


# --- sampling parameters -------------------------------------------------------------------------


def test_sampling_kwargs_for_sampling():
    kwargs = to_vllm_sampling_kwargs(
        SamplingParams(max_new_tokens=7, temperature=0.7, top_p=0.9, n=4, seed=3)
    )
    assert kwargs["n"] == 4 and kwargs["max_tokens"] == 7 and kwargs["seed"] == 3
    assert kwargs["temperature"] == 0.7 and kwargs["top_p"] == 0.9
    assert kwargs["logprobs"] == 0  # the sampled token's log-prob only
    assert kwargs["ignore_eos"] is False and kwargs["skip_special_tokens"] is True
    assert kwargs["detokenize"] is False  # the backend decodes with our tokenizer
    # nothing but temperature and top-p shapes the distribution
    assert kwargs["top_k"] == -1 and kwargs["min_p"] == 0.0 and kwargs["repetition_penalty"] == 1.0
    assert kwargs["presence_penalty"] == 0.0 and kwargs["frequency_penalty"] == 0.0
    assert "logprobs_mode" not in kwargs  # an engine option, see vllm_engine_kwargs
    assert to_vllm_sampling_kwargs(SamplingParams(), detokenize=True)["detokenize"] is True


def test_greedy_is_temperature_zero_with_one_completion_per_copy():
    params = SamplingParams(greedy=True, temperature=0.3, top_p=0.5, n=3)
    kwargs = to_vllm_sampling_kwargs(params)
    assert kwargs["temperature"] == 0.0 and kwargs["top_p"] == 1.0
    assert kwargs["n"] == 1 and prompt_copies(params) == 3  # vLLM refuses greedy n > 1
    assert prompt_copies(SamplingParams(n=3)) == 1


def test_temperatures_vllm_would_clamp_are_refused():
    with pytest.raises(ValueError, match="greedy=True"):
        to_vllm_sampling_kwargs(SamplingParams(temperature=0.005))
    assert to_vllm_sampling_kwargs(SamplingParams(temperature=0.01))["temperature"] == 0.01


def test_which_requests_get_contract_logprobs():
    assert logprobs_match_contract(SamplingParams(temperature=0.6))
    assert logprobs_match_contract(SamplingParams(greedy=True, top_p=0.5))
    assert not logprobs_match_contract(SamplingParams(top_p=0.95))


def test_request_seeds():
    assert request_seeds(None, 3) == [None, None, None]
    seeds = request_seeds(7, 50)
    assert seeds == request_seeds(7, 50) and len(set(seeds)) == 50
    assert all(0 <= seed < 2**62 for seed in seeds)
    assert request_seeds(8, 5) != seeds[:5]
    # vLLM seeds completion j of a request with seed + j; neighbouring requests must not collide
    assert len({seed + j for seed in seeds for j in range(16)}) == 50 * 16


# --- converting outputs --------------------------------------------------------------------------


def test_outputs_are_prompt_major_and_ordered_by_completion_index():
    requests = [
        FakeRequestOutput(
            [1, 10],
            [
                completion([6, EOS], [-0.6, -0.1], index=1, text="b"),
                completion([5, EOS], [-0.5, -0.2], index=0, text="a"),
            ],
        ),
        FakeRequestOutput(
            [1, 11],
            [
                completion([7], [-0.7], index=0, finish_reason="length", text="c"),
                completion([8, 9], [-0.8, -0.9], index=1, finish_reason="length", text="d"),
            ],
        ),
    ]
    out = outputs_from_vllm(requests, 2, eos_token_ids=[EOS])
    assert out.prompt_token_ids == [[1, 10], [1, 10], [1, 11], [1, 11]]
    assert out.response_token_ids == [[5, EOS], [6, EOS], [7], [8, 9]]
    assert out.response_logprobs == [[-0.5, -0.2], [-0.6, -0.1], [-0.7], [-0.8, -0.9]]
    assert out.texts == ["a", "b", "c", "d"]
    assert out.truncated == [False, False, True, True]


def test_decode_replaces_vllm_text():
    requests = [FakeRequestOutput([1], [completion([5, 6], [-1.0, -2.0], text="ignored")])]
    out = outputs_from_vllm(requests, 1, decode=lambda rows: [str(row) for row in rows])
    assert out.texts == ["[5, 6]"]


def test_eos_as_last_allowed_token_is_not_truncated():
    # vLLM versions that check the length before eos report "length" here; the response did end.
    requests = [
        FakeRequestOutput([1], [completion([5, EOS], [-1.0, -0.5], finish_reason="length")])
    ]
    assert outputs_from_vllm(requests, 1, eos_token_ids=[EOS]).truncated == [False]
    assert outputs_from_vllm(requests, 1).truncated == [True]  # without eos ids, vLLM's word


@pytest.mark.parametrize(
    ("logprobs", "message"),
    [
        (None, "no log-probs"),
        ([{5: FakeLogprob(-1.0)}], "2 tokens but 1 log-prob positions"),
        (
            [{5: FakeLogprob(-1.0)}, {99: FakeLogprob(-1.0)}],
            "no log-prob for sampled token 6 at position 1",
        ),
        ([{5: FakeLogprob(-1.0)}, None], "no log-prob for sampled token 6"),
        ([{5: FakeLogprob(-1.0)}, {6: FakeLogprob(-math.inf)}], "log-prob -inf"),
        ([{5: FakeLogprob(-1.0)}, {6: FakeLogprob(math.nan)}], "log-prob nan"),
    ],
)
def test_a_missing_logprob_is_refused(logprobs, message):
    requests = [FakeRequestOutput([1], [FakeCompletion([5, 6], logprobs)])]
    with pytest.raises(ValueError, match=message):
        outputs_from_vllm(requests, 1)


def test_wrong_completion_count_and_aborted_requests_are_refused():
    requests = [FakeRequestOutput([1], [completion([5], [-1.0])])]
    with pytest.raises(ValueError, match="expected 2 completions"):
        outputs_from_vllm(requests, 2)
    aborted = [FakeRequestOutput([1], [completion([5], [-1.0], finish_reason="abort")])]
    with pytest.raises(ValueError, match="'abort'"):
        outputs_from_vllm(aborted, 1)
    with pytest.raises(ValueError, match="prompt_token_ids"):
        outputs_from_vllm([FakeRequestOutput(None, [completion([5], [-1.0])])], 1)


def test_simple_namespaces_work_too():
    entry = types.SimpleNamespace(logprob=-0.25)
    done = types.SimpleNamespace(
        token_ids=(4,), logprobs=[{4: entry}], finish_reason="stop", text="x"
    )
    out = outputs_from_vllm([types.SimpleNamespace(prompt_token_ids=(1,), outputs=[done])], 1)
    assert out.response_logprobs == [[-0.25]] and out.prompt_token_ids == [[1]]


# --- weights -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen():
    return build_tiny_model(char_tokenizer(), hidden_size=32, num_layers=1, num_heads=2)


def test_tied_model_sends_its_parameters_by_their_hf_names(tiny_qwen):
    state = tiny_qwen.state_dict()
    assert tiny_qwen.config.tie_word_embeddings and "lm_head.weight" in state
    items = vllm_weight_items(state, tiny_qwen.config)
    names = [name for name, _ in items]
    # exactly the model's parameters (named_parameters lists a tied weight once), no lm_head
    assert set(names) == {name for name, _ in tiny_qwen.named_parameters()}
    assert "lm_head.weight" not in names and len(names) == len(set(names))
    assert all(not tensor.requires_grad for _, tensor in items)
    assert all(torch.equal(tensor, state[name]) for name, tensor in items)


def test_untied_model_keeps_lm_head():
    model = build_tiny_model(
        char_tokenizer(), architecture="llama", hidden_size=32, num_layers=1, num_heads=2
    )
    model.config.tie_word_embeddings = False
    names = [name for name, _ in vllm_weight_items(model.state_dict(), model.config)]
    assert "lm_head.weight" in names


def test_wrapper_prefixes_and_rotary_buffers_are_dropped():
    weight = torch.zeros(2)
    state = {
        "module._orig_mod.model.embed_tokens.weight": weight,
        "model.layers.0._fsdp_wrapped_module.self_attn.q_proj.weight": weight,
        "model.layers.1._checkpoint_wrapped_module.mlp.up_proj.weight": weight,
        "model.rotary_emb.inv_freq": weight,
        "model.layers.0.self_attn.rotary_emb.inv_freq": weight,
        "module.lm_head.weight": weight,
    }
    names = [name for name, _ in vllm_weight_items(state, {"tie_word_embeddings": True})]
    assert names == [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
    ]
    assert strip_wrapper_prefixes("module.module.model.norm.weight") == "model.norm.weight"
    assert strip_wrapper_prefixes("model.norm.weight") == "model.norm.weight"


def test_names_that_collide_after_stripping_are_refused():
    state = {"module.model.norm.weight": torch.zeros(1), "model.norm.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="both map to 'model.norm.weight'"):
        vllm_weight_items(state, {"tie_word_embeddings": False})


def test_tied_word_embeddings_reads_objects_mappings_and_text_configs():
    assert tied_word_embeddings({"tie_word_embeddings": False}) is False
    assert tied_word_embeddings({"text_config": {"tie_word_embeddings": True}}) is True
    assert tied_word_embeddings(types.SimpleNamespace(tie_word_embeddings=True)) is True
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        tied_word_embeddings({"model_type": "qwen2"})


def test_chunks_keep_order_and_bound_their_size():
    items = [
        (f"w{i}", torch.zeros(n, dtype=torch.float32)) for i, n in enumerate([10, 10, 30, 5, 5])
    ]
    chunks = chunk_weight_items(items, max_bytes=80)  # 20 floats
    assert [[name for name, _ in chunk] for chunk in chunks] == [["w0", "w1"], ["w2"], ["w3", "w4"]]
    assert [name for chunk in chunks for name, _ in chunk] == [name for name, _ in items]
    assert chunk_weight_items([], 1) == []
    with pytest.raises(ValueError):
        chunk_weight_items(items, 0)


def test_worker_extension_hands_pairs_to_load_weights():
    loaded = []

    class Model:
        def load_weights(self, weights):
            loaded.extend(weights)
            return {name for name, _ in weights}

    worker = WeightSyncExtension()
    worker.model_runner = types.SimpleNamespace(get_model=Model)
    count = worker.ngrpo_load_weights([["model.norm.weight", torch.ones(2)]])  # msgpack gives lists
    assert count == 1 and loaded[0][0] == "model.norm.weight" and isinstance(loaded[0], tuple)
    worker.model_runner = types.SimpleNamespace(model=Model())  # runners without get_model
    assert worker.ngrpo_load_weights([("a", torch.ones(1))]) == 1


# --- engine options ------------------------------------------------------------------------------


def test_engine_kwargs():
    kwargs = vllm_engine_kwargs(
        "/m",
        dtype=torch.bfloat16,
        seed=5,
        batch_size=64,
        max_model_len=512,
        engine_kwargs={"enforce_eager": True},
    )
    assert kwargs["model"] == kwargs["tokenizer"] == "/m"
    assert kwargs["dtype"] == "bfloat16" and kwargs["seed"] == 5
    assert kwargs["logprobs_mode"] == LOGPROBS_MODE == "processed_logprobs"
    assert kwargs["worker_extension_cls"] == WORKER_EXTENSION
    assert kwargs["max_num_seqs"] == 64 and kwargs["max_model_len"] == 512
    assert kwargs["enforce_eager"] is True and kwargs["gpu_memory_utilization"] == 0.5
    assert "max_num_seqs" not in vllm_engine_kwargs("/m")
    # the extension the engine names is this module's class
    module, _, name = WORKER_EXTENSION.rpartition(".")
    assert module == vb.__name__ and getattr(vb, name) is WeightSyncExtension


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine_kwargs": {"logprobs_mode": "raw_logprobs"}}, "logprobs_mode"),
        ({"engine_kwargs": {"seed": 1}}, "seed"),
        ({"engine_kwargs": {"quantization": "fp8"}}, "unquantized"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"batch_size": 0}, "batch_size"),
        ({"dtype": "float64"}, "float64"),
    ],
)
def test_engine_kwargs_refuse_what_would_break_the_contract(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vllm_engine_kwargs("/m", **kwargs)


def test_dtypes_and_devices():
    assert vllm_dtype(None) == "auto" and vllm_dtype("float16") == "float16"
    assert vllm_dtype(torch.float32) == "float32"
    check_cuda_device("cuda")
    check_cuda_device(torch.device("cuda:0"))
    with pytest.raises(ValueError, match="generation_backend='hf'"):
        check_cuda_device("cpu")
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        check_cuda_device("cuda:1")


@pytest.mark.parametrize("version", ["0.10.2", "0.10.2rc1", "0.11.0.dev5+g1234", "1.0", "v0.12.3"])
def test_recent_vllm_versions_pass(version):
    check_vllm_version(version)


@pytest.mark.parametrize("version", ["0.10.1.1", "0.9.2", "0.8.5.post1", "unknown"])
def test_older_vllm_versions_are_refused(version):
    with pytest.raises(ImportError, match=r"needs >= 0\.10\.2"):
        check_vllm_version(version)


# --- registration and import ---------------------------------------------------------------------


def test_importing_generation_registers_vllm_without_importing_it():
    check = (
        "import sys, ngrpo_rl.generation as g; "
        "assert 'vllm' not in sys.modules, 'vllm imported'; "
        "assert 'vllm' in g.backends.available(), g.backends.available()"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert backends.get("vllm") is VLLMBackend


def test_constructing_without_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[vllm\]"'):
        VLLMBackend("/nowhere")
    with pytest.raises(ImportError, match="CUDA GPU"):
        create_backend("vllm", "/nowhere", device="cuda", seed=0, batch_size=8)


def test_constructing_with_an_old_vllm_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.10.1"))
    with pytest.raises(ImportError, match="too old"):
        VLLMBackend("/nowhere")


# --- the backend's glue, on a fake engine --------------------------------------------------------


class FakeLLM:
    """Records calls; each request's completion j is token (5 + j) then eos, log-probs -0.1 * j."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def generate(self, prompts, sampling_params, use_tqdm):
        self.calls.append(("generate", (prompts, sampling_params)))
        assert len(prompts) == len(sampling_params) and use_tqdm is False
        return [
            FakeRequestOutput(
                list(prompt["prompt_token_ids"]),
                [completion([5 + j, EOS], [-0.1 * j, -0.5], index=j) for j in range(params.n)],
            )
            for prompt, params in zip(prompts, sampling_params)
        ]

    def collective_rpc(self, method, args=()):
        self.calls.append(("collective_rpc", (method, args)))
        return [len(args[0])]

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache", None))

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tags))


def fake_backend(*, enable_sleep_mode: bool = False, weight_chunk_bytes: int = 1 << 30):
    backend = VLLMBackend.__new__(VLLMBackend)
    backend._attach(
        FakeLLM(),
        sampling_params_class=types.SimpleNamespace,
        tokenizer=char_tokenizer(),
        hf_config=types.SimpleNamespace(tie_word_embeddings=True),
        eos_token_ids=[EOS],
        enable_sleep_mode=enable_sleep_mode,
        weight_chunk_bytes=weight_chunk_bytes,
    )
    return backend


def test_generate_sends_token_prompts_with_one_seed_per_prompt():
    backend = fake_backend()
    prompts = ["1+1=", "2+2="]
    out = backend.generate(prompts, SamplingParams(n=3, max_new_tokens=4, seed=11))
    ((_, (requests, sampling)),) = backend.llm.calls
    encoded = encode_prompts(backend.tokenizer, prompts)
    assert [request["prompt_token_ids"] for request in requests] == encoded
    assert [params.n for params in sampling] == [3, 3] and sampling[0].logprobs == 0
    assert [params.seed for params in sampling] == request_seeds(11, 2)
    assert out.prompt_token_ids == [encoded[0]] * 3 + [encoded[1]] * 3
    assert out.response_token_ids[:3] == [[5, EOS], [6, EOS], [7, EOS]]
    assert out.response_logprobs[1] == [-0.1, -0.5] and out.truncated == [False] * 6
    expected = backend.tokenizer.batch_decode(
        [[5, EOS], [6, EOS], [7, EOS]], skip_special_tokens=True
    )
    assert out.texts[:3] == expected and all(expected)


def test_greedy_generate_submits_n_copies_of_each_prompt():
    backend = fake_backend()
    out = backend.generate(["ab", "cd"], SamplingParams(greedy=True, n=2))
    ((_, (requests, sampling)),) = backend.llm.calls
    assert len(requests) == 4 and requests[0] == requests[1] and requests[2] == requests[3]
    assert all(params.n == 1 and params.temperature == 0.0 for params in sampling)
    assert len(out) == 4 and out.prompt_token_ids[1] == out.prompt_token_ids[0]


def test_generate_without_prompts_calls_nothing():
    backend = fake_backend()
    assert len(backend.generate([], SamplingParams())) == 0 and backend.llm.calls == []


def test_truncated_logprobs_warn_once(caplog):
    backend = fake_backend()
    with caplog.at_level(logging.WARNING, logger=vb.__name__):
        backend.generate(["a"], SamplingParams(top_p=0.9))
        backend.generate(["a"], SamplingParams(top_p=0.9))
    assert sum("top_p" in record.getMessage() for record in caplog.records) == 1


def test_load_state_dict_sends_cpu_chunks_then_resets_the_prefix_cache(tiny_qwen):
    backend = fake_backend(weight_chunk_bytes=4096)
    state = tiny_qwen.state_dict()
    backend.load_state_dict(state)
    calls = backend.llm.calls
    assert calls[-1] == ("reset_prefix_cache", None)
    rpcs = [payload for kind, payload in calls if kind == "collective_rpc"]
    assert len(rpcs) > 1 and all(method == SYNC_METHOD for method, _ in rpcs)
    sent = [pair for _, (chunk,) in rpcs for pair in chunk]
    assert [name for name, _ in sent] == [
        name for name, _ in vllm_weight_items(state, tiny_qwen.config)
    ]
    assert all(tensor.device.type == "cpu" and tensor.is_contiguous() for _, tensor in sent)


def test_sleep_and_wake_up_bookkeeping(tiny_qwen):
    backend = fake_backend(enable_sleep_mode=True)
    backend.sleep(level=1)
    with pytest.raises(RuntimeError, match="sleeps"):
        backend.generate(["a"], SamplingParams())
    with pytest.raises(RuntimeError, match="wake_up"):
        backend.load_state_dict(tiny_qwen.state_dict())
    backend.wake_up(tags=["weights"])
    backend.load_state_dict(tiny_qwen.state_dict())  # weights awake, KV cache still asleep
    with pytest.raises(RuntimeError, match="kv_cache"):
        backend.generate(["a"], SamplingParams())
    backend.wake_up(tags=["kv_cache"])
    assert len(backend.generate(["a"], SamplingParams())) == 1

    backend.sleep(level=2)
    backend.wake_up()
    with pytest.raises(RuntimeError, match="level=2"):
        backend.generate(["a"], SamplingParams())
    backend.load_state_dict(tiny_qwen.state_dict())
    assert len(backend.generate(["a"], SamplingParams())) == 1
    assert ("sleep", 2) in backend.llm.calls and ("wake_up", ["weights"]) in backend.llm.calls
    with pytest.raises(ValueError, match="unknown wake_up tags"):
        backend.wake_up(tags=["everything"])
    with pytest.raises(ValueError, match="level"):
        backend.sleep(level=3)


def test_sleep_needs_sleep_mode():
    with pytest.raises(RuntimeError, match="enable_sleep_mode=True"):
        fake_backend().sleep()


# --- against the real vLLM, where it is installed ------------------------------------------------


def test_sampling_kwargs_are_valid_vllm_sampling_params():  # needs vllm
    vllm = pytest.importorskip("vllm")
    for params in (SamplingParams(n=4, temperature=0.7, seed=1), SamplingParams(greedy=True, n=3)):
        made = vllm.SamplingParams(**to_vllm_sampling_kwargs(params))
        assert made.logprobs == 0 and made.n == to_vllm_sampling_kwargs(params)["n"]


def test_engine_kwargs_are_vllm_engine_args():  # needs vllm
    vllm = pytest.importorskip("vllm")
    accepted = {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    assert set(vllm_engine_kwargs("/m", batch_size=8, max_model_len=64)) <= accepted
