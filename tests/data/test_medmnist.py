"""MedMNIST by name: downloaded from a server (here a real one on 127.0.0.1), MD5-checked."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from medcls.config import DataConfig
from medcls.data.ingest import ingest_data
from medcls.data.manifest import load_manifest
from medcls.data.sources import medmnist
from medcls.data.sources.medmnist import MedMnistSet
from medcls.errors import ConfigError, DataError
from medcls.support.files import read_json
from tests.helpers import SHARED_DATA, requires_shared_data


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def mirror(tmp_path: Path):
    """An HTTP server on 127.0.0.1 serving the files of `tmp_path / "www"`."""
    www = tmp_path / "www"
    www.mkdir()
    _CountingHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_CountingHandler, directory=www))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _tiny_npz(path: Path) -> str:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    np.savez(path, **arrays)
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_checks_the_md5_and_caches_the_file(mirror, tmp_path: Path, monkeypatch):
    www, url = mirror
    md5 = _tiny_npz(www / "tinymnist.npz")
    monkeypatch.setitem(medmnist.DATASETS, "tinymnist", MedMnistSet(md5, ("benign", "malignant")))
    config = DataConfig(source="medmnist:tinymnist", download_mirror=url)
    result = ingest_data(config, tmp_path / "raw", seed=1, base_dir=tmp_path)
    assert result.class_names == ("benign", "malignant")
    counts = load_manifest(result.raw_dir).groupby("split").size().to_dict()
    assert counts["test"] == 6 and counts["val"] == 6 and counts["train"] + counts["calibration"] == 24
    assert read_json(result.raw_dir / "dataset.json")["official_file"] is True
    assert (tmp_path / "data" / "downloads" / "tinymnist.npz").exists()
    ingest_data(config, tmp_path / "again", seed=1, base_dir=tmp_path)
    assert _CountingHandler.requests == ["/tinymnist.npz?download=1"]  # the verified copy is reused


def test_a_file_that_is_not_the_published_one_is_discarded(mirror, tmp_path: Path, monkeypatch):
    www, url = mirror
    _tiny_npz(www / "tinymnist.npz")
    monkeypatch.setitem(medmnist.DATASETS, "tinymnist", MedMnistSet("0" * 32, ("a", "b")))
    with pytest.raises(DataError, match=r"MD5 [0-9a-f]{32} is not the published 0{32}; file discarded"):
        medmnist.fetch("tinymnist", tmp_path / "downloads", url)
    assert not list((tmp_path / "downloads").iterdir())


def test_unreachable_server_and_unknown_names_are_clear_errors(mirror, tmp_path: Path):
    _, url = mirror
    with pytest.raises(DataError, match=r"cannot download http://127\.0\.0\.1:\d+/bloodmnist\.npz"):
        medmnist.fetch("bloodmnist", tmp_path / "downloads", url)  # the mirror has no such file: 404
    with pytest.raises(DataError, match=r"cannot download http://127\.0\.0\.1:9/pathmnist\.npz"):
        medmnist.fetch("pathmnist", tmp_path / "downloads", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(ConfigError, match="unknown data set"):
        medmnist.fetch("chestmnist", tmp_path / "downloads", url)  # multi-label: not offered


@requires_shared_data("bloodmnist.npz")
def test_the_official_bloodmnist_file_verifies(mirror, tmp_path: Path):
    www, url = mirror
    shutil.copy(SHARED_DATA / "bloodmnist.npz", www / "bloodmnist.npz")
    path = medmnist.fetch("bloodmnist", tmp_path / "downloads", url)
    assert medmnist.file_md5(path) == "7053d0359d879ad8a5505303e11de1dc"


@pytest.mark.parametrize(
    ("arrays", "config", "message"),
    [
        ({"train_images": np.zeros((400, 64, 64), np.uint8), "train_labels": np.zeros((400, 1), np.int64)},
         {"max_file_megabytes": 1}, r"train_images\.npy inflates to 1 MB \(data\.max_file_megabytes is 1\)"),
        ({"train_images": np.zeros((2, 20_000, 8), np.uint8), "train_labels": np.zeros(2, np.int64)},
         {"max_image_pixels": 100_000}, "train_images are 8x20000 px, outside"),
        ({"train_images": np.zeros((2, 28, 28), np.float64), "train_labels": np.zeros(2, np.int64)},
         {}, "must be N x H x W"),
        ({"train_images": np.zeros((3, 28, 28), np.uint8), "train_labels": np.zeros(2, np.int64)},
         {}, r"must be one integer label per image \(3\)"),
        ({"train_images": np.zeros((3, 28, 28), np.uint8)}, {}, "come in pairs"),
    ],
)  # fmt: skip
def test_npz_members_are_checked_from_their_headers_before_loading(tmp_path: Path, arrays, config, message):
    """A small file that would inflate to gigabytes is refused before anything is loaded."""
    np.savez_compressed(tmp_path / "hostile.npz", **arrays)
    with pytest.raises(DataError, match=message):
        ingest_data(DataConfig(source="medmnist:hostile.npz", **config), tmp_path / "raw", seed=1, base_dir=tmp_path)
