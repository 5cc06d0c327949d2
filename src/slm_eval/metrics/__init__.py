"""Measurements: timing, memory and (later) quality, energy and robustness."""
