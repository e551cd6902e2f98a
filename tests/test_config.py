"""params.yaml -> typed configs: the shipped file is valid, and every broken one fails loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medcls.config import Params, load_params, parse_source
from medcls.errors import ConfigError
from tests.helpers import REPO, tiny_params, write_params


def test_shipped_params_file_equals_the_typed_defaults():
    assert load_params(REPO / "params.yaml") == Params()


def test_flat_params_use_the_yaml_keys():
    flat = Params().flat()
    assert flat["data.source"] == "synthetic"
    assert flat["validate.leakage"] == "warn"
    assert flat["train.augment.horizontal_flip"] is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("synthetic", ("synthetic", "")),
        ("medmnist:../shared/data/bloodmnist.npz", ("medmnist", "../shared/data/bloodmnist.npz")),
        ("folder:/data/xrays", ("folder", "/data/xrays")),
    ],
)
def test_parse_source(value, expected):
    assert tuple(parse_source(value)) == expected


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"data": {"source": "s3:bucket"}}, "data.source: unknown source scheme 's3'"),
        ({"data": {"source": "folder:"}}, "data.source: 'folder:' needs a location"),
        ({"train": {"epochs": -1}}, "train.epochs: Input should be greater than 0 or 'auto' (got -1)"),
        ({"train": {"epoch": 3}}, "train.epoch: unknown key"),
        ({"preprocess": {"channels": 2}}, "preprocess.channels"),
        ({"data": {"patient_pattern": "(unclosed"}}, "data.patient_pattern: not a regular expression"),
        ({"data": {"synthetic": {"images_per_patient": [5, 2]}}}, "images_per_patient: 5 > 2"),
    ],
)
def test_broken_params_name_the_key(tmp_path: Path, sections: dict, message: str):
    path = write_params(tmp_path, tiny_params(**sections), complete=False)
    with pytest.raises(ConfigError) as error:
        load_params(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unreadable_params_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(tmp_path / "list.yaml")
