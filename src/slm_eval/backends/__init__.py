"""Backends that run a model: one module each, listed in :mod:`slm_eval.backends.catalogue`."""
