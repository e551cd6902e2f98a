"""`medcls checkout VERSION`: a registered version's data and model back in the workspace, from
the DVC cache or remote, through the dvc.lock logged with it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from medcls.errors import RegistryError
from medcls.support.versioning import data_version, restore_outputs

RESTORED = ["data/raw", "data/processed", "models"]
LOCK_ARTIFACT = "lineage/dvc.lock"


@dataclass(frozen=True)
class CheckoutResult:
    version: str
    restored: dict[str, str]  # output -> its DVC hash
    data_version: str  # data/raw's hash now in the workspace: the version's


def checkout_version(model_name: str, version: str, root: Path) -> CheckoutResult:
    """Restore version `version`'s data/raw, data/processed and models into `root`; dvc.lock
    becomes the one it was built from."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        registered = MlflowClient().get_model_version(model_name, version)
    except MlflowException:
        raise RegistryError(f"model '{model_name}' has no version {version}") from None
    with tempfile.TemporaryDirectory() as scratch:
        try:
            lock = download_artifacts(run_id=registered.run_id, artifact_path=LOCK_ARTIFACT, dst_path=scratch)
        except (MlflowException, OSError):
            why = registered.tags.get("dvc_lock", "no dvc.lock was logged with it")
            raise RegistryError(f"{model_name} v{version} cannot be restored ({why})") from None
        restored = restore_outputs(root, Path(lock).read_text(encoding="utf-8"), RESTORED)
    now = data_version(root / "data" / "raw")
    if now != registered.tags.get("data_version"):
        raise RegistryError(f"restored data/raw is {now}, not v{version}'s {registered.tags.get('data_version')}")
    return CheckoutResult(str(version), restored, now)
