"""The shipped pathways, one package each (definitions, inputs, state, rules); see carepath.engine."""
