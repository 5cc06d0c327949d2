"""Turning models into deployable variants: ONNX export, parity checks."""
