"""Config is data: YAML in, frozen dataclasses out, strict about typos, stable hashes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mdr.config import (
    ConfigError,
    ModelConfig,
    RunConfig,
    SlotConfig,
    apply_overrides,
    config_hash,
    dump_yaml,
    from_dict,
    load_run_config,
    to_dict,
    variant_names,
    variant_overrides,
)

CONFIGS = Path(__file__).resolve().parent.parent / "benchmarks" / "configs"


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = RunConfig()
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    again = load_run_config(path)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)


def test_configs_are_frozen() -> None:
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  etaa: 0.1\n")
    with pytest.raises(ConfigError, match="etaa"):
        load_run_config(path)


def test_wrong_types_and_literals_are_errors() -> None:
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(RunConfig, {"loss": {"eta": "high"}})
    with pytest.raises(ConfigError, match="kind"):
        from_dict(ModelConfig, {"slots": [{"name": "c", "kind": "visual_mostly"}]})
    with pytest.raises(ConfigError, match="integer"):
        from_dict(RunConfig, {"seed": 1.5})


def test_slots_parse_into_dataclasses() -> None:
    m = from_dict(
        ModelConfig,
        {"slots": [{"name": "colour", "kind": "visual_dominant", "dim": 6, "label": "colour"}]},
    )
    assert m.slots == (SlotConfig("colour", "visual_dominant", 6, "colour"),)


def test_overrides_change_one_field_and_the_hash() -> None:
    cfg = RunConfig()
    wo_ic = apply_overrides(cfg, {"loss.eta": 0})
    assert wo_ic.loss.eta == 0.0 and isinstance(wo_ic.loss.eta, float)
    assert to_dict(wo_ic)["model"] == to_dict(cfg)["model"]
    assert config_hash(wo_ic) != config_hash(cfg)
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(cfg, {"loss.nope": 1})


def test_hash_is_independent_of_key_order() -> None:
    a = from_dict(RunConfig, {"seed": 1, "loss": {"eta": 0.5, "mu": 2.0}})
    b = from_dict(RunConfig, {"loss": {"mu": 2.0, "eta": 0.5}, "seed": 1})
    assert config_hash(a) == config_hash(b)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("mdr_*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_with_their_variants(path: Path) -> None:
    cfg = load_run_config(path)
    assert isinstance(cfg, RunConfig)
    names = [n for section in variant_names(path).values() for n in section]
    for name in names:
        variant = load_run_config(path, variant_overrides(path, name))
        assert isinstance(variant, RunConfig)
    if "mdr_wo_ic" in names:  # Table 3's ablation switches off exactly the information constraint
        wo_ic = load_run_config(path, variant_overrides(path, "mdr_wo_ic"))
        assert wo_ic.loss.eta == 0.0 and cfg.loss.eta > 0
        assert wo_ic.model == cfg.model


def test_unknown_variant_lists_the_known_ones() -> None:
    path = CONFIGS / "mdr_synthetic.yaml"
    with pytest.raises(ConfigError, match="mdr_wo_ic"):
        variant_overrides(path, "mdr_wo_everything")


def test_model_names_resolve_in_one_place() -> None:
    from mdr.config import model_overrides

    path = CONFIGS / "mdr_synthetic.yaml"
    # an ablation keeps the file's model; a baseline brings its own; any other name is a model
    assert model_overrides(path, "mdr_wo_ic") == {"loss.eta": 0.0}
    assert model_overrides(path, "pnn")["model.name"] == "pnn"
    assert model_overrides(path, "my_model") == {"model.name": "my_model"}
    assert model_overrides(None, "deepfm") == {"model.name": "deepfm"}
    cfg = load_run_config(path, {"train.epochs": 2}, model="deepfm")
    assert cfg.model.name == "deepfm" and cfg.train.epochs == 2
    cfg = load_run_config(path, {"loss.beta": 4}, model="beta_vae")
    assert not cfg.model.use_text and cfg.loss.eta == 0.0  # the baseline's own override set
    assert cfg.loss.beta == 4.0  # the user's --set comes last


def test_every_table_model_is_named_in_every_shipped_config() -> None:
    for path in (CONFIGS / "mdr_synthetic.yaml", CONFIGS / "mdr_amazon.yaml"):
        names = {n for section in variant_names(path).values() for n in section}
        assert {
            "beta_vae",
            "abae",
            "din_pp",
            "din",
            "wide_deep",
            "pnn",
            "deepfm",
            "mdr_wo_ic",
        } <= names, path.name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train.batch_size": 0}, "batch_size from 1 to 1000000"),
        ({"train.epochs": 0}, "epochs from 1 to 100000"),
        ({"train.lr": -1.0}, "lr a positive finite number"),
        ({"train.device": "gpu"}, "device cpu, cuda"),
        ({"train.valid_fraction": 1.0}, "valid_fraction"),
        ({"loss.beta": float("nan")}, r"loss.beta: expected a finite number, got nan"),
        ({"seed": -1}, "seed >= 0"),
        # non-finite numbers and sizes without bounds
        ({"train.weight_decay": float("inf")}, "train.weight_decay: expected a finite number"),
        ({"train.lr": 1e400}, "expected a finite number"),
        ({"train.batch_size": 10**9}, "batch_size from 1 to 1000000"),
        ({"train.max_hist": 10**6}, "max_hist from 1 to 1000"),
        ({"model.image_channels": []}, "image_channels: 1 to 16 widths"),
        ({"model.id_dim": -4}, "id_dim and text_hidden from 1 to 4096"),
        ({"model.slots.*.dim": 10**7}, "slot dim from 1 to 4096"),
        ({"model.dropout": 1.0}, "0 <= dropout < 1"),
        ({"loss.n_text_neg": 10**6}, "n_text_neg from 1 to 1000"),
    ],
)
def test_impossible_values_are_one_clear_error(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), override)


def test_floats_in_exponent_notation_are_numbers(tmp_path: Path) -> None:
    from mdr.config import parse_value

    assert parse_value("1e-3") == 0.001 and parse_value("2E5") == 2e5
    assert parse_value("5") == 5 and parse_value("null") is None and parse_value("x") == "x"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-3\n")
    assert load_run_config(path).train.lr == 0.001


def test_a_config_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"train:\n  lr: 0.1 # caf\xe9\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_run_config(path)


def test_a_prepare_section_is_typed_and_checked_like_the_run_config(tmp_path: Path) -> None:
    from mdr.config import PhotoCorpusConfig, PrepareConfig, load_prepare_config

    photos = load_prepare_config(CONFIGS / "fashion.yaml", PhotoCorpusConfig, limit=400)
    assert (photos.image_size, photos.min_count, photos.limit) == (32, 50, 400)
    # a config without the section: the defaults
    assert load_prepare_config(CONFIGS / "mdr_synthetic.yaml", PrepareConfig) == PrepareConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("prepare: {image_size: 32, min_cout: 5}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: prepare: unknown key\(s\) \['min_cout'\]"):
        load_prepare_config(bad, PhotoCorpusConfig)
    bad.write_text("prepare: {image_size: 2}\n")
    with pytest.raises(ConfigError, match="prepare: need 8 <= image_size <= 512"):
        load_prepare_config(bad, PhotoCorpusConfig)
    bad.write_text("prepare: {k_core: two}\n")
    with pytest.raises(ConfigError, match=r"prepare\.k_core: expected an integer"):
        load_prepare_config(bad, PrepareConfig)
    # the run config ignores the section, as it always did
    assert load_run_config(CONFIGS / "fashion.yaml").model.name == "image_factors"


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    from mdr.config import load_yaml

    cfg = tmp_path / "twice.yaml"
    cfg.write_text("train:\n  lr: 0.001\n  epochs: 3\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"key 'lr' given twice \(first on line 2\)"):
        load_yaml(cfg)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("train: {epochs: " + "9" * 5000 + "}\n", "a value YAML cannot read"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "a value YAML cannot read"),
        ("? [a, b]\n: 1\n", "a mapping key must be a scalar"),
        ("train: {lr: .inf}\n", "train.lr: expected a finite number"),
    ],
)
def test_values_yaml_refuses_otherwise_are_one_line(text: str, says: str, tmp_path: Path) -> None:
    cfg = tmp_path / "odd.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(says)) as e:
        load_run_config(cfg)
    assert len(str(e.value)) < 600 and "\n" not in str(e.value)


def test_an_error_never_repeats_a_huge_value() -> None:
    with pytest.raises(ConfigError) as e:
        apply_overrides(RunConfig(), {"train.device": "x" * 100_000})
    assert len(str(e.value)) < 1000
