"""Entry scripts that run inside a training container (and locally, unchanged)."""
