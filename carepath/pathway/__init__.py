"""The pathway: versioned definitions (data), input/output models and the pure rules.

Nothing in this package does I/O or imports Temporal; workflows call into it.
"""
