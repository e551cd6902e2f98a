"""Prefect wiring of the medcls pipeline: flows call the same steps as `dvc.yaml` does."""
