"""Model catalogue, weight sources and the local model store."""
