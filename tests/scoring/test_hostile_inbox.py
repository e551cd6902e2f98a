"""Scheduled scoring against a hostile inbox: no file stops a run, no run wedges the next, files
still being copied wait, and what was scored once costs a `stat` the next time."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from medcls.config import ScoreConfig
from medcls.data.demo import make_demo_inbox
from medcls.data.images import ImageLimits
from medcls.scoring import load_production_model, score_inbox
from medcls.scoring.store import fold_pending, save_part
from medcls.support.files import printable_path
from tests.data.test_bad_inputs import RADIANCE, _deflated_dicom, _wide_bmp, _wide_tiff

NOW = ScoreConfig(settle_seconds=0)
SMALL_FILES = ImageLimits(max_file_bytes=1 << 20)


@pytest.fixture(scope="module")
def production(trained_project):
    return load_production_model(trained_project.params.registry.model_name)


def _hostile_inbox(raw_dir: Path, inbox: Path, outside: Path) -> dict[str, str | None]:
    """Good images, every kind of bad file the findings name, and random byte flips and
    truncations of real images; file name -> expected reason (None: scored, '?': either)."""
    good = make_demo_inbox(raw_dir, inbox, 6, seed=21)
    expected: dict[str, str | None] = {path.name: None for path in good}
    files = {
        "wide.bmp": (_wide_bmp(), "image side too large"),
        "wide.tif": (_wide_tiff(), "image side too large"),
        "radiance.png": (RADIANCE, "its bytes are no PNG, JPEG, BMP or TIFF"),
        "deflated.dcm": (_deflated_dicom(), "deflated DICOM inflates past 1 MB"),
        "empty.png": (b"", "empty file"),
        "notes.jpg": (b"see report", "its bytes are no PNG"),
        "huge.png": (b"\x89PNG" + bytes(1_200_000), "file too large"),
        ("x" * 236) + ".png": (b"garbage", "its bytes are no PNG"),  # a legal 240-byte name
        "ct.dcm": (Path(get_testdata_file("CT_small.dcm")).read_bytes(), None),
    }
    for name, (data, reason) in files.items():
        (inbox / name).write_bytes(data)
        expected[name] = reason
    original = good[0].read_bytes()
    rng = np.random.default_rng(5)
    for number in range(16):  # byte flips and truncations of a real image: scored or quarantined
        damaged = bytearray(original)
        if number % 2:
            damaged = damaged[: int(rng.integers(8, len(damaged)))]
        else:
            for position in rng.integers(0, len(damaged), 8):
                damaged[position] = int(rng.integers(0, 256))
        (inbox / f"damaged-{number}{good[0].suffix}").write_bytes(bytes(damaged))
        expected[f"damaged-{number}{good[0].suffix}"] = "?"
    (outside / "secret.png").write_bytes(good[1].read_bytes())
    (inbox / "escape.png").symlink_to(outside / "secret.png")
    expected["escape.png"] = "a link that leads out of the inbox"
    (inbox / "dangling.png").symlink_to(inbox / "nowhere.png")
    expected["dangling.png"] = "broken link"
    weird = os.fsencode(inbox) + b"/scan-\xff.png"
    Path(os.fsdecode(weird)).write_bytes(good[2].read_bytes()[:10])  # not UTF-8, and truncated
    expected[os.fsdecode(b"scan-\xff.png")] = "not a decodable image"
    return expected


def test_every_file_of_a_hostile_inbox_is_scored_or_quarantined_and_none_is_lost(
    trained_project, production, tmp_path: Path
):
    inbox, out, outside = tmp_path / "inbox", tmp_path / "out", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    expected = _hostile_inbox(trained_project.paths.raw, inbox, outside)
    first = score_inbox(NOW, production, inbox, out, limits=SMALL_FILES)  # never raises

    predictions = pd.read_csv(first.predictions_path, dtype=str, keep_default_na=False)
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str, keep_default_na=False)
    scored = {Path(path).name for path in predictions["path"]}
    reasons = {Path(path).name: reason for path, reason in zip(quarantine["path"], quarantine["reason"], strict=True)}
    printable = {printable_path(name): reason for name, reason in expected.items()}
    assert scored.isdisjoint(reasons) and scored | set(reasons) == set(printable)  # every file, once
    for name, reason in printable.items():
        if reason is None:
            assert name in scored, name
        elif reason != "?":
            assert reason in reasons.get(name, ""), name
    assert predictions["image_id"].is_unique
    assert (quarantine["status"] == "moved").all()
    assert len(list((out / "quarantine").iterdir())) == len(quarantine)  # moved, never deleted
    assert (outside / "secret.png").exists()  # the link moved, not what it pointed to
    assert len(list(inbox.iterdir())) == len(scored)

    second = score_inbox(NOW, production, inbox, out, limits=SMALL_FILES)
    assert (second.scored, second.quarantined, second.skipped) == (0, 0, len(predictions))


def test_an_absurd_header_is_quarantined_not_a_failed_run(trained_project, production, tmp_path: Path):
    """The 5 KB BMP declaring 2,097,160 x 8 px that made OpenCV raise and every later run fail."""
    inbox = tmp_path / "inbox"
    make_demo_inbox(trained_project.paths.raw, inbox, 2, seed=22)
    (inbox / "wide.bmp").write_bytes(_wide_bmp())
    for _ in range(2):
        result = score_inbox(NOW, production, inbox, tmp_path / "out")
    assert result.quarantined == 0 and result.skipped == 2
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert quarantine["reason"].tolist() == ["image side too large (2097160x8 px; at most 1048576 per side)"]


def test_a_quarantine_that_cannot_move_the_file_never_wedges_scoring(trained_project, production, tmp_path: Path):
    """The move fails (here a file sits where the quarantine folder should be; a read-only inbox
    does the same): the bad file stays, the failure is recorded, every run goes on, and the next
    run neither reads the file again nor fails on the record."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    make_demo_inbox(trained_project.paths.raw, inbox, 2, seed=23)
    (inbox / "broken.png").write_bytes(b"\x89PNG not really")
    out.mkdir()
    (out / "quarantine").write_text("not a folder")
    result = score_inbox(NOW, production, inbox, out)
    again = score_inbox(NOW, production, inbox, out)
    assert (result.scored, result.quarantined) == (2, 1)
    assert (again.scored, again.quarantined, again.skipped) == (0, 0, 2)  # known unreadable: not read again
    quarantine = pd.read_csv(out / "quarantine.csv", keep_default_na=False)
    assert len(quarantine) == 1 and quarantine["status"][0].startswith("not moved: ")
    assert (inbox / "broken.png").exists()


def test_a_file_still_being_copied_waits_and_one_that_changes_in_quarantine_comes_back(
    trained_project, production, tmp_path: Path
):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    (source,) = make_demo_inbox(trained_project.paths.raw, tmp_path / "complete", 1, seed=24)
    inbox.mkdir()
    data = source.read_bytes()
    (inbox / "arriving.png").write_bytes(data[: len(data) // 2])  # a copy under way, modified just now
    waiting = score_inbox(ScoreConfig(settle_seconds=60), production, inbox, out)
    assert (waiting.scored, waiting.quarantined, waiting.settling) == (0, 0, 1)
    assert (inbox / "arriving.png").exists()
    # A writer that stalled longer than settle_seconds: the half file is quarantined...
    stalled = score_inbox(NOW, production, inbox, out)
    assert stalled.quarantined == 1 and not (inbox / "arriving.png").exists()
    moved = Path(pd.read_csv(out / "quarantine.csv")["moved_to"][0])
    # ...and when the writer finishes (its file handle follows the file), it comes back and is scored.
    time.sleep(0.01)
    moved.write_bytes(data)
    finished = score_inbox(NOW, production, inbox, out)
    assert (finished.readmitted, finished.scored, finished.quarantined) == (1, 1, 0)
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert quarantine["status"][0].startswith("re-admitted as readmitted-")


def test_a_second_run_costs_a_stat_per_scored_file_not_a_decode(trained_project, production, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    copied = make_demo_inbox(trained_project.paths.raw, inbox, 5, seed=25)
    first = score_inbox(NOW, production, inbox, tmp_path / "out")

    def no_reading(*args, **kwargs):
        raise AssertionError("an unchanged, scored file was read again")

    monkeypatch.setattr("medcls.scoring.reader.load_image", no_reading)
    again = score_inbox(NOW, production, inbox, tmp_path / "out")
    assert (first.scored, again.scored, again.skipped, again.quarantined) == (5, 0, 5, 0)
    monkeypatch.undo()
    shutil.copy(copied[0], inbox / "renamed-copy.png")  # a new file: read, found already scored
    assert score_inbox(NOW, production, inbox, tmp_path / "out").skipped == 6


def test_scoring_applies_the_data_limits_of_the_params(trained_project, production, tmp_path: Path):
    from medcls import pipeline

    data = trained_project.params.data.model_copy(update={"max_image_pixels": 100})
    strict = pipeline.project_of(trained_project.paths.root, trained_project.params.model_copy(update={"data": data}))
    make_demo_inbox(trained_project.paths.raw, tmp_path / "inbox", 2, seed=26)
    result = pipeline.score(strict, tmp_path / "inbox", tmp_path / "out")
    reasons = pd.read_csv(tmp_path / "out" / "quarantine.csv")["reason"]
    assert result.quarantined == 2 and reasons.str.contains("data.max_image_pixels is 100").all()


def test_the_final_fold_keeps_rows_another_scorer_saved_meanwhile(tmp_path: Path):
    """Two scorers whose lock is not shared (NFS without working locks): neither loses the other's rows."""
    out = tmp_path / "out"
    save_part(out, pd.DataFrame({"image_id": ["a"], "model_version": ["1"]}), "run1-000000")
    fold_pending(out)
    (out / "predictions.csv").write_text("image_id,model_version\na,1\nb,1\n")  # the other scorer
    save_part(out, pd.DataFrame({"image_id": ["c"], "model_version": ["1"]}), "run1-000001")
    assert fold_pending(out)["image_id"].tolist() == ["a", "b", "c"]


def test_a_lock_file_that_is_a_link_is_refused(production, tmp_path: Path):
    from medcls.errors import MedclsError

    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "out" / ".scoring.lock").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "inbox").mkdir()
    with pytest.raises(MedclsError, match="is a link"):
        score_inbox(NOW, production, tmp_path / "inbox", tmp_path / "out")
