"""Each config field declared once (ngrpo_rl.settings.SETTINGS), and everything derived from it:
RLVRConfig's defaults, builder signatures and validate(), Settings, the CLI parser, docs/CONFIG.md,
and the parameters components declare when they register."""

from __future__ import annotations

import dataclasses
import inspect
import math
import pickle
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from ngrpo_rl.algorithms import ALGORITHMS, NGRPO, NGRPOConfig, RLVRConfig
from ray import tune
from ray.rllib.algorithms.algorithm_config import NotProvided

from ngrpo_rl import advantages, losses, settings
from ngrpo_rl.settings import SETTINGS, Param, Settings, above

ROOT = Path(__file__).resolve().parents[1]
NAMES = [s.name for s in SETTINGS]


def _has_float(tp) -> bool:
    return tp is float or any(_has_float(a) for a in typing.get_args(tp))


FLOAT_FIELDS = [s for s in SETTINGS if _has_float(s.type)]
REGISTERED_FIELDS = [s for s in SETTINGS if s.registry is not None]


def _bad(setting, value):
    """``value`` in the shape of ``setting``'s type (inside a tuple for tuple fields)."""
    if typing.get_origin(setting.type) is tuple:
        return tuple(value for _ in setting.default) or (value,)
    return value


# ---- one declaration per field -------------------------------------------------------------------


def test_every_field_is_declared_once_in_one_section():
    assert len(NAMES) == len(set(NAMES))
    assert {s.section for s in SETTINGS} == set(settings.SECTIONS)
    assert all(s.help.strip() for s in SETTINGS), "every field has a help text"
    assert [f.name for f in dataclasses.fields(Settings)] == [*NAMES, "seed"]


@pytest.mark.parametrize("name", NAMES)
def test_default_is_the_same_on_config_settings_and_docs(name):
    default = settings.get(name).default
    assert getattr(RLVRConfig(), name) == default
    assert getattr(Settings(), name) == default
    rows = [line for line in (ROOT / "docs" / "CONFIG.md").read_text().splitlines()
            if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"{name} must appear once in docs/CONFIG.md"
    assert rows[0].split(" | ")[2] == f"`{default!r}`"


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_preset_is_valid(algorithm):
    ALGORITHMS[algorithm][1]().validate()


def test_defaults_are_valid_and_settings_are_a_plain_frozen_picklable_record():
    settings.validate_settings(Settings())
    plain = Settings()
    assert pickle.loads(pickle.dumps(plain)) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.lr = 1.0  # type: ignore[misc]
    changed = dataclasses.replace(plain, evaluation_ks=[1, 2], betas=[0.9, 0.95])
    assert changed.evaluation_ks == (1, 2) and changed.betas == (0.9, 0.95)
    assert Settings().component_kwargs == {} and Settings().component_kwargs is not Settings().component_kwargs


def test_config_settings_carry_every_field_and_the_seed():
    config = NGRPOConfig().training(lr=3e-4, betas=[0.8, 0.9]).critic(gamma=0.9).debugging(seed=7)
    plain = config.settings()
    assert all(getattr(plain, name) == getattr(config, name) for name in NAMES)
    assert (plain.seed, plain.lr, plain.betas, plain.gamma) == (7, 3e-4, (0.8, 0.9), 0.9)
    assert NGRPOConfig().settings().seed == 0  # RLlib's seed None


# ---- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("setting", FLOAT_FIELDS, ids=lambda s: s.name)
def test_nan_and_infinity_are_refused_in_every_float_field(setting, value):
    config = RLVRConfig()
    setattr(config, setting.name, _bad(setting, value))
    with pytest.raises(ValueError, match=rf"^{setting.name} .*(nan|inf)"):
        config.validate()
    with pytest.raises(ValueError, match=setting.name):
        dataclasses.replace(Settings(), **{setting.name: _bad(setting, value)})


def test_bad_values_are_refused_naming_the_field_the_value_and_the_fix():
    with pytest.raises(ValueError, match=r"dtype .*'float7'.*\.generation\(dtype=") as error:
        RLVRConfig().generation(dtype="float7").validate()
    assert "bfloat16" in str(error.value)
    with pytest.raises(ValueError, match="group_size must be an integer >= 1, got True"):
        RLVRConfig().training(group_size=True).validate()
    with pytest.raises(ValueError, match=r"epsilon_neg must be a finite number in \[0, 1\), got 1.0"):
        RLVRConfig().training(epsilon_neg=1.0).validate()
    with pytest.raises(ValueError, match="betas"):
        RLVRConfig().training(betas=(0.9,)).validate()
    with pytest.raises(ValueError, match="device"):
        RLVRConfig().generation(device="gpu").validate()
    with pytest.raises(ValueError, match="dual_clip_c"):
        RLVRConfig().training(dual_clip_c=1.0).validate()
    RLVRConfig().generation(dtype="bfloat16", device="cuda:1").training(dual_clip_c=3.0).validate()


@pytest.mark.parametrize("setting", REGISTERED_FIELDS, ids=lambda s: s.name)
def test_unknown_registered_names_are_refused_listing_the_valid_ones(setting):
    registry = settings.resolve_registry(setting.registry)
    if registry is None:
        pytest.skip(f"the registry of {setting.name} is not importable here")
    config = RLVRConfig()
    setattr(config, setting.name, _bad(setting, "no_such_component"))
    with pytest.raises(ValueError, match=setting.name) as error:
        config.validate()
    assert all(name in str(error.value) for name in registry.available())


def test_checks_across_fields():
    with pytest.raises(ValueError, match="group_size must be >= 2 with advantage_estimator='grpo'"):
        RLVRConfig().training(group_size=1).validate()
    RLVRConfig().training(group_size=1, advantage_estimator="w_reinforce").validate()
    with pytest.raises(ValueError, match="overlong_buffer must be <= max_new_tokens"):
        RLVRConfig().training(overlong_buffer=17).validate()
    RLVRConfig().training(reward_shaping=("overlong_penalty",)).validate()  # buffer: a third
    with pytest.raises(ValueError, match="evaluation_ks.*evaluation_samples_per_problem"):
        RLVRConfig().evaluation(evaluation_ks=(1, 16)).validate()
    with pytest.raises(ValueError, match="evaluation_ks"):
        RLVRConfig().evaluation(evaluation_ks=()).validate()
    RLVRConfig().training(kl_in_reward=True).validate()  # allowed, though it matters only with kl_coef > 0


# ---- builder methods -----------------------------------------------------------------------------


@pytest.mark.parametrize("section", settings.SECTIONS)
def test_builder_signatures_list_the_sections_fields(section):
    parameters = inspect.signature(getattr(RLVRConfig, section)).parameters
    keyword_only = [p for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    fields = settings.section_settings(section)
    assert [p.name for p in keyword_only] == [s.name for s in fields]
    assert all(p.default is NotProvided for p in keyword_only)
    assert [p.annotation for p in keyword_only] == [s.type for s in fields]
    assert all(s.name in getattr(RLVRConfig, section).__doc__ for s in fields)


def test_builders_set_their_fields_and_refuse_unknown_keywords():
    config = RLVRConfig()
    config.training(group_size=4, betas=[0.9, 0.95], lr=1e-4, train_batch_size=32)
    config.critic(gamma=0.95, critic_lr=1e-4).generation(max_new_tokens=32)
    config.evaluation(evaluation_ks=[1, 2], evaluation_duration=3).reporting(log_completions=0)
    assert (config.group_size, config.betas, config.lr, config.train_batch_size) == (4, (0.9, 0.95), 1e-4, 32)
    assert (config.gamma, config.critic_lr, config.max_new_tokens) == (0.95, 1e-4, 32)
    assert (config.evaluation_ks, config.evaluation_duration, config.log_completions) == ((1, 2), 3, 0)
    assert RLVRConfig().gamma == 1.0  # RLlib's field, our default
    config.training(group_size=NotProvided)
    assert config.group_size == 4
    with pytest.raises(TypeError, match=r"num_workers.*num_generation_workers") as error:
        config.generation(num_workers=2)
    assert "max_new_tokens" in str(error.value)
    with pytest.raises(TypeError, match=r"epsilon_pso.*did you mean epsilon_pos"):
        config.training(epsilon_pso=0.3)
    with pytest.raises(TypeError, match=r"max_new_tokens belongs to \.generation\(\)"):
        config.training(max_new_tokens=8)
    with pytest.raises(TypeError, match="gamma"):
        config.generation(gamma=0.9)


def test_tune_search_spaces_are_kept_until_tune_resolves_them():
    config = NGRPOConfig().training(epsilon_pos=tune.grid_search([0.2, 0.3]), lr=tune.loguniform(1e-5, 1e-3))
    assert config.epsilon_pos == {"grid_search": [0.2, 0.3]}
    with pytest.raises(ValueError, match="epsilon_pos holds an unresolved Ray Tune search space"):
        config.validate()
    # What a Tune trial does: resolve the dict, then build the algorithm's config from it.
    resolved = config.to_dict()
    resolved.update(epsilon_pos=0.3, lr=1e-4)
    trial_config = NGRPO.get_default_config().update_from_dict(resolved)
    trial_config.validate()
    assert (trial_config.settings().epsilon_pos, trial_config.lr) == (0.3, 1e-4)
    assert isinstance(NGRPO.default_resource_request(resolved), object)


# ---- component parameters ------------------------------------------------------------------------


def _register_alpha_estimator():
    name = "test_settings_alpha"
    if name not in advantages.available():

        @advantages.register(
            name,
            params={"std_normalize": "std_normalize", "alpha": Param(float, 0.5, "scales A", above(0))},
        )
        def alpha_estimator(rewards, *, std_normalize=True, alpha=0.5):
            centered = rewards - rewards.mean(dim=1, keepdim=True)
            return alpha * (centered / (rewards.std(dim=1, keepdim=True) + 1e-6) if std_normalize else centered)

    return name


def test_a_user_estimator_gets_its_own_parameter_from_the_config():
    name = _register_alpha_estimator()
    config = NGRPOConfig().training(advantage_estimator=name, component_kwargs={"alpha": 0.3})
    config.validate()
    assert config.component_params("advantage_estimator") == {"std_normalize": True, "alpha": 0.3}
    assert config.settings().component_params("advantage_estimator") == {"std_normalize": True, "alpha": 0.3}
    default = NGRPOConfig().training(advantage_estimator=name)
    assert default.component_params("advantage_estimator") == {"std_normalize": True, "alpha": 0.5}
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    out = advantages.compute(name, rewards, **config.component_params("advantage_estimator"))
    torch.testing.assert_close(out, 0.3 * advantages.compute("grpo", rewards))


def test_component_kwargs_are_checked_against_the_declarations():
    name = _register_alpha_estimator()
    with pytest.raises(ValueError, match=r"component_kwargs\['alpha'\].*nan"):
        NGRPOConfig().training(advantage_estimator=name, component_kwargs={"alpha": math.nan}).validate()
    with pytest.raises(ValueError, match=r"component_kwargs\['alpha'\].*> 0"):
        NGRPOConfig().training(advantage_estimator=name, component_kwargs={"alpha": -1.0}).validate()
    with pytest.raises(ValueError, match=r"\['beta'\].*no chosen component declares.*'alpha'"):
        NGRPOConfig().training(advantage_estimator=name, component_kwargs={"alpha": 0.3, "beta": 1}).validate()
    # A key only another (unchosen) estimator declares is refused too.
    with pytest.raises(ValueError, match="alpha"):
        NGRPOConfig().training(component_kwargs={"alpha": 0.3}).validate()
    with pytest.raises(ValueError, match="'epsilon' comes from the field advantage_epsilon"):
        NGRPOConfig().training(component_kwargs={"epsilon": 1e-3}).validate()


def test_a_required_parameter_must_be_given():
    name = "test_settings_required"
    if name not in advantages.available():

        @advantages.register(name, params={"alpha": Param(float, help="no default")})
        def required(rewards, *, alpha):
            return alpha * rewards

    with pytest.raises(ValueError, match="requires parameter 'alpha'"):
        NGRPOConfig().training(advantage_estimator=name).validate()
    config = NGRPOConfig().training(advantage_estimator=name, component_kwargs={"alpha": 2.0})
    config.validate()
    assert config.component_params("advantage_estimator") == {"alpha": 2.0}


def test_undeclared_components_get_their_keywords_named_like_fields():
    name = "test_settings_undeclared_loss"
    if name not in losses.available_policy_losses():

        @losses.register_policy_loss(name)
        def upper_only(logp, old_logp, advantages, mask, *, epsilon_pos=0.2, scale=1.0):
            return losses.ppo_clip(logp, old_logp, advantages, mask, epsilon_pos=epsilon_pos)

    config = NGRPOConfig().training(policy_loss=name)
    config.validate()
    assert config.component_params("policy_loss") == {"epsilon_pos": config.epsilon_pos}


def test_declarations_are_checked_when_a_component_registers():
    with pytest.raises(ValueError, match="'advantage_epsilo'.*no config field.*advantage_epsilon"):
        advantages.register("test_settings_typo", params={"epsilon": "advantage_epsilo"})
    with pytest.raises(ValueError, match="does not accept"):
        advantages.register("test_settings_missing_kw", params={"epsilon": "advantage_epsilon"})(
            lambda rewards: rewards
        )
    with pytest.raises(ValueError, match="default"):
        advantages.register("test_settings_bad_default", params={"alpha": Param(float, "x")})
    assert "test_settings_missing_kw" not in advantages.available()


def test_builtin_components_declare_their_fields():
    settings_ = Settings()
    expected = {
        "grpo": {"std_normalize": True, "epsilon": 1e-6},
        "ngrpo": {"virtual_reward": 1.0, "num_virtual_samples": 1, "std_normalize": True, "epsilon": 1e-6},
        "dr_grpo": {},
        "rloo": {},
        "w_reinforce": {"positive_weight": 0.1, "correct_threshold": 0.5},
        "psr": {"correct_threshold": 0.5},
        "nsr": {"correct_threshold": 0.5},
    }
    for name, kwargs in expected.items():
        assert settings_.component_params("advantage_estimator", name) == kwargs, name
    assert settings_.component_params("policy_loss") == {"epsilon_pos": 0.2, "epsilon_neg": 0.2, "dual_clip_c": None}
    assert settings_.component_params("group_filter") == {}
    threshold = dataclasses.replace(settings_, advantage_estimator="psr", correct_threshold=0.9)
    assert threshold.component_params("advantage_estimator") == {"correct_threshold": 0.9}


def test_drop_zero_advantage_samples_follows_the_estimator_unless_set():
    assert dataclasses.replace(Settings(), advantage_estimator="psr").drops_zero_advantage_samples()
    assert dataclasses.replace(Settings(), advantage_estimator="nsr").drops_zero_advantage_samples()
    assert not Settings().drops_zero_advantage_samples()
    assert not dataclasses.replace(
        Settings(), advantage_estimator="psr", drop_zero_advantage_samples=False
    ).drops_zero_advantage_samples()


def test_the_custom_estimator_example_takes_its_parameter_from_the_config():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_estimator.py")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "the estimator receives {'std_normalize': False, 'scale': 0.5}" in completed.stdout


# ---- the CLI parser ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, value",
    [
        ("lr", "5e-5", 5e-5),
        ("group_size", "4", 4),
        ("std_normalize", "false", False),
        ("dual_clip_c", "null", None),
        ("dual_clip_c", "3", 3.0),
        ("betas", "[0.9,0.95]", (0.9, 0.95)),
        ("evaluation_ks", "[1, 2]", (1, 2)),
        ("reward_shaping", "[overlong_penalty]", ("overlong_penalty",)),
        ("component_kwargs", "{alpha: 0.3}", {"alpha": 0.3}),
        ("device", "cuda:0", "cuda:0"),
        ("dtype", "None", None),
        ("model_name_or_path", "/models/qwen", "/models/qwen"),
    ],
)
def test_parse_value_reads_by_the_declared_type(name, text, value):
    parsed = settings.parse_value(name, text)
    assert parsed == value and type(parsed) is type(value)
    settings.validate_value(name, parsed)


def test_parse_value_refuses_unreadable_text_and_unknown_fields():
    with pytest.raises(ValueError, match="group_size"):
        settings.parse_value("group_size", "four")
    with pytest.raises(KeyError, match="did you mean epsilon_pos"):
        settings.parse_value("epsilon_pso", "0.3")


def test_markdown_table_lists_every_section_and_citation():
    text = settings.markdown_table()
    for section in settings.SECTIONS:
        assert f"## {section}: `.{section}(...)`" in text
    assert "arXiv 2509.18851" in text and "arXiv 2503.14476" in text
    assert len(re.findall(r"^\| `", text, flags=re.MULTILINE)) == len(SETTINGS)
