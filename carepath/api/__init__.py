"""The HTTP API (FastAPI): JSON in the SPEC's vocabulary, OpenAPI at /docs."""
