"""The MLflow Model Registry: register a trained model with its lineage, the promotion gate (both
models measured on the same images), production by alias under a lock, and restoring a version."""

from medcls.registry.checkout import CheckoutResult, checkout_version
from medcls.registry.gate import Figures, promotion_decision
from medcls.registry.models import (
    PRODUCTION,
    RegisteredModel,
    load_model_version,
    load_production_model,
    production_version,
)
from medcls.registry.versions import (
    RegistrationResult,
    VersionSummary,
    list_versions,
    production_history,
    promote,
    register_model,
    rollback,
)

__all__ = [
    "PRODUCTION",
    "CheckoutResult",
    "Figures",
    "RegisteredModel",
    "RegistrationResult",
    "VersionSummary",
    "checkout_version",
    "list_versions",
    "load_model_version",
    "load_production_model",
    "production_history",
    "production_version",
    "promote",
    "promotion_decision",
    "register_model",
    "rollback",
]
