"""Scoring a model: perplexity, line completion, fill-in-the-middle, HumanEval pass@k in a sandbox.

`codecomplete eval` (runner.py) picks a task and a backend: a model folder run here
(backends.LocalBackend) or a running server over HTTP (backends.ServerBackend).
"""
