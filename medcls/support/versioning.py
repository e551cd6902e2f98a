"""DVC, from Python: data versions as `dvc.lock` records them, the pipeline's stages reproduced one
at a time (as `dvc repro` would), pushes to the remote, and outputs restored from the cache.

Every function takes the project's root (the folder of dvc.yaml) and opens DVC's repository
there, from there (DVC resolves stage paths against the working directory); DVC's own lock
serialises them with any `dvc` command running in the same project.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from medcls.errors import PipelineBusy, StageFailed

LOCK_FILE = "dvc.lock"


def data_version(path: Path) -> str:
    """DVC's content hash of a file or folder (`<md5>.dir` for folders), as `dvc.lock` records it."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    filesystem = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:
        _, _, tree = build(HashFileDB(filesystem, scratch), str(path), filesystem, "md5", dry_run=True)
    return tree.hash_info.value


def pipeline_stages(root: Path) -> list[str]:
    """The stages of dvc.yaml, each after the stages it depends on."""
    from dvc.repo.reproduce import get_active_graph, plan_repro

    with _repository(root) as repo:
        return [stage.addressing for stage in plan_repro(get_active_graph(repo.index.graph))]


def reproduce_stage(root: Path, stage: str) -> bool:
    """Run one stage if its code, inputs or params changed since dvc.lock recorded it (as `dvc
    repro` does), and record it there; True if it ran. Its command's output goes to this process's."""
    from dvc.exceptions import ReproductionError

    _put_this_environment_first()
    with _repository(root) as repo:
        try:
            return bool(repo.reproduce(stage, single_item=True))
        except ReproductionError as exc:
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            raise StageFailed(f"DVC stage '{stage}' failed{cause} (its own output above says why)") from None


def push(root: Path) -> str | None:
    """Push every output of the pipeline to the default remote; its name, or None if there is none."""
    with _repository(root) as repo:
        remote = repo.config["core"].get("remote")
        if remote:
            repo.push()
        return remote


def locked_hashes(lock_text: str) -> dict[str, str]:
    """{output path: its hash} of every stage output a dvc.lock names."""
    stages = (yaml.safe_load(lock_text) or {}).get("stages", {})
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", []) if "md5" in out}


def restore_outputs(root: Path, lock_text: str, outputs: list[str]) -> dict[str, str]:
    """Make `lock_text` the project's dvc.lock and bring `outputs` back as it records them, from
    the cache or else the default remote (like `git checkout <rev> dvc.lock && dvc pull`).
    Returns {output: hash}."""
    hashes = locked_hashes(lock_text)
    missing = [output for output in outputs if output not in hashes]
    if missing:
        raise StageFailed(f"that dvc.lock records no {', '.join(missing)}")
    (root / LOCK_FILE).write_text(lock_text, encoding="utf-8")
    with _repository(root) as repo:
        if repo.config["core"].get("remote"):
            repo.fetch(targets=outputs)
        repo.checkout(targets=outputs, force=True)
    return {output: hashes[output] for output in outputs}


@contextlib.contextmanager
def _repository(root: Path) -> Iterator:
    from dvc.exceptions import NotDvcRepoError
    from dvc.lock import LockError
    from dvc.repo import Repo

    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:
            yield repo
    except NotDvcRepoError:
        raise StageFailed(f"{root} is not a DVC project (no .dvc folder; `dvc init` makes one)") from None
    except LockError:
        raise PipelineBusy(
            f"{root}: another DVC command (a `dvc repro`, or another training-pipeline run) holds "
            "its lock (.dvc/tmp/lock); this one stops without changing anything"
        ) from None


def _put_this_environment_first() -> None:
    """Stage commands (`medcls ...`) come from the environment running this, also when it is not
    activated (a Prefect worker started as .venv/bin/python)."""
    here = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"
