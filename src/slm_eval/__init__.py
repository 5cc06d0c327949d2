"""slm-eval: evaluate small language models for edge devices used at borders."""

__version__ = "0.1.0"
