"""Activities: the only place where the pathway touches the outside world (database, sinks)."""
