"""Fixtures for the decoder export and parity tests: tiny seed decoders and the bundled SmolLM2, exported once."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_eval.optimize.onnx_decoder_export import DecoderExport
from tests.tiny_models import TinyDecoders


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory: pytest.TempPathFactory) -> TinyDecoders:
    """Tiny random Phi-3 (LongRoPE), TinyLlama (GQA) and MobileLLaMA decoders, each export made on first use."""
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("torch")
    return TinyDecoders(tmp_path_factory.mktemp("tiny-decoders"))


@pytest.fixture(scope="session")
def smollm2_int4(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> DecoderExport:
    """The bundled SmolLM2-135M-Instruct GGUF, dequantized and exported to int4 for the CPU once (about 30 s)."""
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("torch")
    from slm_eval.optimize.onnx_decoder_export import export_decoder

    root = tmp_path_factory.mktemp("smollm2-onnx")
    return export_decoder(smollm2_gguf, root / "onnx-int4", "int4", "cpu", cache_dir=root / "cache")
