"""Presets: overlays that hold only what differs from the defaults, for a kind of data.

`medcls preset NAME` deep-merges `presets/NAME.yaml` over the defaults and writes the result
into params.yaml, so DVC still tracks every key; params.yaml keeps its comments (ruamel.yaml's
round trip), and the keys whose value changed are reported.
"""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from medcls.config import Params, check_params, flatten, read_sections
from medcls.support.files import write_bytes


def list_presets(folder: Path) -> dict[str, str]:
    """Each preset's name and the first line of its leading comment."""
    return {path.stem: _title(path) for path in sorted(folder.glob("*.yaml"))}


def preset_params(preset: Path) -> dict:
    """The defaults with the preset's values merged over them, checked like params.yaml is."""
    overlay = read_sections(preset, missing="no such preset (see `medcls preset`)")
    merged = deep_merge(Params().model_dump(by_alias=True, mode="json"), overlay)
    check_params(merged, preset)
    return merged


def apply_preset(preset: Path, params_path: Path) -> dict[str, tuple[object, object]]:
    """Write the preset's merged params into `params_path`; returns {dotted key: (old, new)} for
    every value that changed."""
    target = preset_params(preset)
    before = yaml.safe_load(params_path.read_text(encoding="utf-8")) if params_path.exists() else {}
    write_bytes(params_path, _with_values(params_path, target).encode())
    old, new = flatten(before or {}), flatten(target)
    return {key: (old.get(key), value) for key, value in new.items() if old.get(key) != value}


def deep_merge(base: dict, overlay: dict) -> dict:
    """`base` with `overlay`'s values, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in overlay.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = deep_merge(base[key], value) if nested else value
    return merged


def _title(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[:1]
    return first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""


def _with_values(params_path: Path, values: dict) -> str:
    """The text of params.yaml holding `values`: its comments, order and quoting kept where it
    exists, a plain dump where it does not."""
    from ruamel.yaml import YAML

    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.representer.add_representer(type(None), _null)
    document = round_trip.load(params_path.read_text(encoding="utf-8")) if params_path.exists() else None
    if document is None:
        return yaml.safe_dump(values, sort_keys=False)
    _update(document, values)
    text = io.StringIO()
    round_trip.dump(document, text)
    return text.getvalue()


def _update(node, values: dict) -> None:
    """Make the round-trip mapping `node` hold `values`, touching only what differs."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    for key in [key for key in node if key not in values]:
        del node[key]
    for key, value in values.items():
        current = node.get(key)
        if isinstance(value, dict) and isinstance(current, CommentedMap):
            _update(current, value)
        elif isinstance(value, list):
            if list(current or []) != value or not isinstance(current, CommentedSeq):
                sequence = CommentedSeq(value)
                sequence.fa.set_flow_style()  # short lists of scalars, as params.yaml writes them
                node[key] = sequence
        elif current != value or isinstance(current, bool) != isinstance(value, bool):
            node[key] = value


def _null(representer, _value):
    """`key: null`, as params.yaml writes it (ruamel's round trip would leave the value empty)."""
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")
