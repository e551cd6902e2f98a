"""medcls: label and classify medical images as a reproducible, scheduled MLOps pipeline."""

__version__ = "0.1.0"
