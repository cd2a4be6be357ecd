"""carepath: a durable care-pathway engine (decision support, never prescribing)."""

__version__ = "0.1.0"
