"""Errors a user can act on: each carries one line naming the bad input and the reason."""


class MedclsError(Exception):
    """Base class: the CLI prints the message as one line and exits non-zero."""


class ConfigError(MedclsError):
    """params.yaml (or a value derived from it) is wrong."""


class DataError(MedclsError):
    """The input data cannot be used at all (nothing to ingest, unreadable source)."""


class ValidationFailed(MedclsError):
    """The data failed one or more blocking expectations."""


class RegistryError(MedclsError):
    """The MLflow Model Registry does not hold what was asked for."""


class ScoringBusy(MedclsError):
    """Another scoring run holds the output folder's lock."""


class StageFailed(MedclsError):
    """A pipeline stage run through DVC failed, or DVC cannot run it."""


class PipelineBusy(MedclsError):
    """Another DVC command or training run holds the project's lock."""


class RegistryBusy(MedclsError):
    """Another registration or promotion of the same model held the registry lock too long."""
