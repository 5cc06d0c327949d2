"""ONNX Runtime: decoders through onnxruntime-genai, encoders through plain onnxruntime sessions.

A folder with a ``genai_config.json`` is a decoder built by onnxruntime-genai's model builder
(:mod:`slm_eval.backends.onnx_decoder`); a folder with a ``model.onnx`` and a ``head.json`` is an encoder
with its task head exported by ``slm-eval convert`` (:mod:`slm_eval.backends.onnx_encoder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from slm_eval.backends.base import LoadOptions
from slm_eval.errors import UserError
from slm_eval.models.registry import ModelCard

if TYPE_CHECKING:
    from slm_eval.backends.onnx_decoder import OnnxDecoderBackend
    from slm_eval.backends.onnx_encoder import OnnxEncoderBackend

GENAI_CONFIG = "genai_config.json"
ENCODER_HEAD = "head.json"


def load(card: ModelCard, location: Path | None, options: LoadOptions) -> OnnxDecoderBackend | OnnxEncoderBackend:
    """Load an ONNX model folder: a decoder (``genai_config.json``) or an encoder with its head (``head.json``).

    Raises:
        UserError: the location is not an ONNX folder this project wrote or can read.
    """
    if location is None or not location.is_dir():
        raise UserError(
            f"the onnx backend needs an ONNX model folder; convert {card.name} first: "
            f"slm-eval convert --model {card.name} --format onnx"
        )
    if (location / GENAI_CONFIG).is_file():
        from slm_eval.backends.onnx_decoder import load_decoder

        return load_decoder(card, location, options)
    if (location / ENCODER_HEAD).is_file():
        from slm_eval.backends.onnx_encoder import load_encoder

        return load_encoder(card, location, options)
    raise UserError(
        f"folder {location} is not a runnable ONNX model: a decoder needs {GENAI_CONFIG} (onnxruntime-genai), "
        f"an encoder needs {ENCODER_HEAD} beside model.onnx (written by slm-eval convert)"
    )
