"""Typed configs: shipped YAMLs load, bad input is reported all at once, overrides apply."""

import importlib.resources

import pytest
import yaml

from simu_bench.errors import UserError
from simu_bench.unlearning import registry
from simu_bench.unlearning.config import UnlearnConfig
from simu_bench.unlearning.config_overrides import parse_override
from simu_bench.unlearning.registry import load_config


@pytest.mark.parametrize("method", registry.names())
def test_every_shipped_yaml_loads_with_and_without_reference(method):
    path = registry.config_path(method)
    text = path.read_text()
    assert text.startswith("#") and "simu-bench run" in text.split("\n\n")[0], (
        "YAML must open with what it runs and the command"
    )
    config = load_config(method)
    assert isinstance(config, UnlearnConfig) and config.method == method
    assert config.source == str(path)
    if "reference" in yaml.safe_load(text):
        reference = load_config(method, reference=True)
        assert reference.method == method and reference != config


def test_baseline_yamls_ship_inside_the_package():
    names = {p.name for p in importlib.resources.files("simu_bench.baselines").iterdir()}
    assert {"fo_graddiff.yaml", "so_graddiff.yaml"} <= names


def test_reference_settings_are_soul_published_values():
    fo = load_config("fo_graddiff", reference=True)
    assert (fo.optimizer.name, fo.optimizer.lr, fo.optimizer.weight_decay, fo.options.gamma) == (
        "adamw",
        5e-6,
        0.1,
        0.3,
    )
    assert (fo.train.epochs, fo.train.batch_size, fo.train.grad_accum_steps) == (5, 1, 4)
    assert (fo.train.warmup_ratio, fo.train.max_grad_norm) == (0.1, 1.0)
    so = load_config("so_graddiff", reference=True)
    assert (so.optimizer.name, so.optimizer.variant, so.optimizer.lr, so.options.gamma) == (
        "sophiag",
        "soul",
        5e-6,
        2.0,
    )
    assert (so.optimizer.betas, so.optimizer.rho, so.optimizer.weight_decay) == ((0.9, 0.95), 0.04, 0.1)


def test_all_problems_reported_at_once_naming_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "method: fo_graddiff\n"
        "options: {gamma: -1}\n"
        "optimizer: {name: adam, lr: fast, betas: [0.9, 1.5], colour: red}\n"
        "train: {epochs: 0, batch_size: 2.5}\n"
        "extra: 1\n"
    )
    with pytest.raises(UserError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith("8 problems in config")
    for key, expectation in [
        ("options.gamma", "got -1, expected a value >= 0.0"),
        ("optimizer.name", "got 'adam', expected one of adamw, sophiag"),
        ("optimizer.lr", "got 'fast', expected a number"),
        ("optimizer.betas", "expected a value >= 0.0 and < 1.0"),
        ("optimizer.colour", "unknown key"),
        ("train.epochs", "got 0, expected a value >= 1"),
        ("train.batch_size", "got 2.5, expected an integer"),
        ("extra", "unknown key"),
    ]:
        assert (
            f"{path}: {key}: " in message and expectation in message.split(f"{path}: {key}: ")[1].split(";")[0] + ";"
        ), key


def test_unknown_method_answers_with_the_available_ones():
    with pytest.raises(UserError, match=r"did you mean 'so_graddiff'\?.*fo_graddiff"):
        load_config({"method": "so_gradiff"})
    with pytest.raises(UserError, match="method: missing"):
        load_config({})


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(UserError, match=r"train.epoch: unknown key \(did you mean 'epochs'\?\)"):
        load_config("fo_graddiff", ["train.epoch=3"])


def test_dotted_overrides_parse_values_with_yaml():
    config = load_config(
        "so_graddiff",
        [
            "optimizer.lr=1e-5",
            "optimizer.betas=[0.8, 0.9]",
            "train.max_steps=3",
            "options.gamma=0.5",
            "optimizer.variant=gnb",
        ],
    )
    assert config.optimizer.lr == 1e-5  # PyYAML reads "1e-5" as text; floats accept it
    assert config.optimizer.betas == (0.8, 0.9)
    assert (config.train.max_steps, config.options.gamma, config.optimizer.variant) == (3, 0.5, "gnb")
    assert load_config("so_graddiff", ["train.max_steps=null"]).train.max_steps is None


def test_override_errors():
    with pytest.raises(UserError, match="is not KEY=VALUE"):
        parse_override("optimizer.lr")
    with pytest.raises(UserError, match="train.max_steps: got 0"):
        load_config("fo_graddiff", ["train.max_steps=0"])
    with pytest.raises(UserError, match="gamma is a value, not a section"):
        load_config("fo_graddiff", ["options.gamma.x=1"])
    with pytest.raises(UserError, match="optimizer.lr: got .*inf.*finite"):
        load_config("fo_graddiff", ["optimizer.lr=.inf"])


def test_bad_reference_block_is_reported_even_when_unused(tmp_path):
    path = tmp_path / "ref.yaml"
    path.write_text("method: fo_graddiff\nreference:\n  source: a paper\n  optimizer: {lr: -5}\n")
    with pytest.raises(UserError, match=r"reference.optimizer.lr: got -5"):
        load_config(path)


def test_reference_requested_but_absent(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("method: fo_graddiff\n")
    with pytest.raises(UserError, match="reference: missing"):
        load_config(path, reference=True)


def test_file_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(listing)


def test_to_dict_is_plain_data():
    data = load_config("so_graddiff").to_dict()
    assert data["optimizer"]["betas"] == [0.9, 0.95] and data["method"] == "so_graddiff"
    yaml.safe_dump(data)  # serialisable without custom types


def test_method_name_wins_over_a_same_named_folder_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "simu").mkdir()
    assert load_config("simu").method == "simu"


def test_an_unknown_override_key_is_reported_once():
    with pytest.raises(UserError) as info:
        load_config("so_graddiff", ["optimizer.lrr=1"])
    assert str(info.value).count("lrr") == 1


def test_an_option_for_a_method_without_options_says_the_section_takes_none():
    from simu_bench.unlearning import config_loading

    with pytest.raises(UserError, match="options.foo: unknown key; this section takes no keys"):
        config_loading.load_config({"method": "plain", "options": {"foo": 1}})  # options_of: NoOptions


@pytest.mark.parametrize(
    "old, new", [("gamma: 2", "options.gamma"), ("optimizer: {bs: 10}", "optimizer.curvature_scale")]
)
def test_a_key_of_an_older_config_names_its_new_place(tmp_path, old, new):
    path = tmp_path / "old.yaml"
    path.write_text(f"method: so_graddiff\n{old}\n")
    with pytest.raises(UserError, match=f"moved; write it as {new}"):
        load_config(path)


def test_gamma_belongs_to_graddiff_options():
    assert load_config("so_graddiff", ["options.gamma=0.5"]).options.gamma == 0.5
    with pytest.raises(UserError, match="gamma: moved; write it as options.gamma"):
        load_config("so_graddiff", ["gamma=0.5"])


# The keys every method shares where its config has them: learning rate, length, retain weight.
SHARED_SEARCH_KEYS = {"optimizer.lr", "train.epochs", "train.max_steps", "options.gamma", "options.alpha"}


@pytest.mark.parametrize("method", registry.names())
def test_every_method_searches_the_shared_keys_plus_at_most_one_of_its_own(method):
    """Equal budgets: the same shared dimensions where a method has them (a method that trains
    searches lr and epochs; one with a retain weight searches it), at most one method-specific key."""
    config = load_config(method)
    keys = set(config.search)
    assert keys, f"{method} has no search: block"
    own = keys - SHARED_SEARCH_KEYS
    assert len(own) <= 1, f"{method} searches {sorted(own)}: at most one method-specific key"
    if config.optimizer.lr > 0:  # it trains
        assert {"optimizer.lr", "train.epochs"} <= keys
    for weight in ("gamma", "alpha"):
        if hasattr(config.options, weight):
            assert f"options.{weight}" in keys, f"{method} has a retain weight {weight} it does not search"
