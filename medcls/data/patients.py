"""Patient ids are stored only as a keyed hash (HMAC-SHA256) of what the source calls them.

The key is the secret in MEDCLS_PATIENT_SALT, the same wherever a data set is ingested (or its
patients would not match across versions). Without it a public default key is used, which anyone
can try names against: ids that come from a record (a CSV or labels column) or a DICOM header are
real patient identifiers and are then refused, unless `data.allow_default_salt` says the data is
public. Ids read from file names only earn a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

from medcls.config import DataConfig
from medcls.errors import DataError

SALT_VARIABLE = "MEDCLS_PATIENT_SALT"
_DEFAULT_SALT = "medcls-default-salt"
IDENTIFYING = frozenset({"record", "dicom"})  # where a patient id is a real identifier
log = logging.getLogger(__name__)


def patient_key(name: str) -> str:
    """The pseudonymous id of the patient the source calls `name`."""
    key = (os.environ.get(SALT_VARIABLE) or _DEFAULT_SALT).encode()
    return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:16]


def has_secret() -> bool:
    return bool(os.environ.get(SALT_VARIABLE))


def check_salt(origins: set[str], cfg: DataConfig, source: str) -> None:
    """Refuse real patient identifiers under the public default key (unless allowed); warn for
    ids from file names. `origins` says where the patient ids came from."""
    if has_secret():
        return
    if origins & IDENTIFYING and not cfg.allow_default_salt:
        raise DataError(
            f"{source}: patient ids from a {' and a '.join(sorted(origins & IDENTIFYING))} would be hashed with the "
            f"public default key, which anyone can try names against: set {SALT_VARIABLE} to a secret "
            "(or data.allow_default_salt: true for public data)"
        )
    if origins - {"generated"}:
        log.warning("patient ids are hashed with the public default key: set %s for real patient data", SALT_VARIABLE)
