"""The MLflow Model Registry: register a trained model, the promotion gate, production by alias."""

from medcls.registry.gate import Contender, promotion_decision
from medcls.registry.versions import (
    PRODUCTION,
    RegistrationResult,
    VersionSummary,
    list_versions,
    production_version,
    promote,
    register_model,
    rollback,
)

__all__ = [
    "PRODUCTION",
    "Contender",
    "RegistrationResult",
    "VersionSummary",
    "list_versions",
    "production_version",
    "promote",
    "promotion_decision",
    "register_model",
    "rollback",
]
