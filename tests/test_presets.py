"""Presets: short overlays of the defaults, merged into params.yaml with its comments kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medcls.config import Params, flatten, load_params
from medcls.errors import ConfigError
from medcls.presets import apply_preset, deep_merge, preset_params
from tests.helpers import REPO

PRESETS = sorted((REPO / "presets").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_each_preset_is_a_short_overlay_of_valid_changes(preset: Path):
    overlay = flatten(yaml.safe_load(preset.read_text()))
    defaults = Params().flat()
    assert set(overlay) <= set(defaults), "an unknown key"
    assert all(defaults[key] != value for key, value in overlay.items()), "a value equal to the default"
    assert len(overlay) <= 25
    Params.model_validate(preset_params(preset))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_applying_a_preset_writes_every_key_and_keeps_the_comments(tmp_path: Path, preset: Path):
    params_path = tmp_path / "params.yaml"
    params_path.write_bytes((REPO / "params.yaml").read_bytes())
    changed = apply_preset(preset, params_path)
    written = load_params(params_path)
    assert written == Params.model_validate(preset_params(preset))
    assert set(changed) == set(flatten(yaml.safe_load(preset.read_text())))
    text = params_path.read_text()
    original = (REPO / "params.yaml").read_text()
    comments = [line.strip() for line in original.splitlines() if line.strip().startswith("#")]
    assert all(comment in text for comment in comments)
    assert yaml.safe_load(text).keys() == yaml.safe_load(original).keys()  # every section, in order


def test_switching_presets_leaves_nothing_of_the_first(tmp_path: Path):
    params_path = tmp_path / "params.yaml"
    params_path.write_bytes((REPO / "params.yaml").read_bytes())
    apply_preset(REPO / "presets" / "chest_xray.yaml", params_path)
    apply_preset(REPO / "presets" / "bloodmnist.yaml", params_path)
    assert load_params(params_path) == Params.model_validate(preset_params(REPO / "presets" / "bloodmnist.yaml"))
    assert not load_params(params_path).train.search  # chest_xray's search is gone


def test_deep_merge_merges_sections_key_by_key():
    base = {"train": {"epochs": 15, "augment": {"contrast": 0.1, "rotation_degrees": 8.0}}, "seed": 42}
    merged = deep_merge(base, {"train": {"augment": {"contrast": 0.3}}})
    assert merged == {"train": {"epochs": 15, "augment": {"contrast": 0.3, "rotation_degrees": 8.0}}, "seed": 42}
    assert base["train"]["augment"]["contrast"] == 0.1  # the defaults are not changed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  epoch: 3\n", "train.epoch: unknown key"),
        ("train:\n  epochs: -1\n", "train.epochs: Input should be greater than 0"),
        ("train: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_a_broken_preset_names_the_file_and_the_key(tmp_path: Path, text: str, message: str):
    preset = tmp_path / "broken.yaml"
    preset.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        preset_params(preset)
    assert str(error.value).startswith(str(preset))
