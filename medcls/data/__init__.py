"""Images in: read any source (data.sources, data.images), ingest, validate, split, preprocess."""
