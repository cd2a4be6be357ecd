"""`carepath simulate`: patients' stories in days, run through the production path."""
