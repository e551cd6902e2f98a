"""Plumbing every layer shares: atomic files, parallel map, progress, MLflow and DVC helpers."""
