"""Config is data: YAML in, frozen dataclasses out, strict about typos, stable hashes."""

from __future__ import annotations

import dataclasses
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
    m = from_dict(ModelConfig, {"slots": [{"name": "colour", "kind": "visual_dominant",
                                           "dim": 6, "label": "colour"}]})
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


def test_deepctr_config_merges_common_model_section_and_overrides() -> None:
    from baselines.deepctr_models import load_deepctr_config

    path = CONFIGS / "deepctr.yaml"
    cfg = load_deepctr_config(path, "deepfm", {"train.epochs": 2, "seed": 5, "model.name": "x"})
    assert cfg.epochs == 2 and cfg.dnn_hidden == (80, 40) and cfg.num_threads == 1
    with pytest.raises(ConfigError, match="does not apply"):
        load_deepctr_config(path, "pnn", {"loss.eta": 0.0})
    with pytest.raises(ConfigError, match="unknown deepctr model"):
        load_deepctr_config(path, "fm", {})
