"""Scoring: label an inbox with the production model, exactly once per image and model version.

production (the model and its contract) -> reader (decode, hash, prepare) -> predict (one
forward pass: triage columns, heat maps) -> store (pending parts, predictions.csv), with the
lock and the quarantine around them; `run` puts them together.
"""

from medcls.registry.models import RegisteredModel, load_model_version, load_production_model, suspension
from medcls.scoring.lock import scoring_lock
from medcls.scoring.run import ChunkMapper, ChunkResult, ChunkScorer, ScoreResult, score_chunk, score_inbox
from medcls.scoring.store import read_predictions
from medcls.scoring.triage import entropy

__all__ = [
    "ChunkMapper",
    "ChunkResult",
    "ChunkScorer",
    "RegisteredModel",
    "ScoreResult",
    "entropy",
    "load_model_version",
    "load_production_model",
    "read_predictions",
    "score_chunk",
    "score_inbox",
    "scoring_lock",
    "suspension",
]
