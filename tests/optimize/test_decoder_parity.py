"""Decoder parity between the PyTorch original and its onnxruntime-genai export: passes if faithful, else fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime_genai")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from slm_eval.errors import UserError
from slm_eval.optimize.convert import PARITY_PROMPTS
from slm_eval.optimize.decoder_parity import (
    TOLERANCES,
    ParityReport,
    centred_cosine,
    check_decoder_parity,
    greedy_agreement,
    tolerances_for,
)
from slm_eval.optimize.onnx_decoder_export import DecoderExport
from tests.tiny_models import ARCHITECTURES, PROMPT, TinyDecoders, scale_initializer

PROMPTS = (PROMPT, "The officer checks the passport at the border and stamps the entry permit.")


@pytest.fixture(params=list(ARCHITECTURES))
def seed_name(request: pytest.FixtureRequest) -> str:
    """The seed model whose architecture the tiny decoder copies."""
    return str(request.param)


# --- figures ------------------------------------------------------------------------------------------------


def test_centred_cosine_ignores_a_shift_of_all_logits() -> None:
    logits = np.array([1.0, 3.0, -2.0, 0.5])
    assert centred_cosine(logits, logits + 40.0) == pytest.approx(1.0)
    assert centred_cosine(logits, -logits) == pytest.approx(-1.0)
    assert centred_cosine(np.zeros(3), np.zeros(3)) == 1.0
    assert centred_cosine(np.zeros(3), np.array([0.0, 1.0, 2.0])) == 0.0


def test_greedy_agreement_counts_positions_and_finds_the_first_difference() -> None:
    assert greedy_agreement([1, 2, 3, 4], [1, 2, 3, 4]) == (1.0, None)
    assert greedy_agreement([1, 2, 3, 4], [1, 9, 3, 4]) == (0.75, 1)
    assert greedy_agreement([1, 2], [1, 2, 3, 4]) == (0.5, 2)
    assert greedy_agreement([], []) == (1.0, None)


def test_tolerances_loosen_with_the_precision() -> None:
    assert tolerances_for("fp32").max_abs_diff == 1e-2
    assert TOLERANCES["fp32"].min_cosine > TOLERANCES["int8"].min_cosine > TOLERANCES["int4"].min_cosine
    assert TOLERANCES["int8"].max_abs_diff is None and TOLERANCES["int4"].max_abs_diff is None
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        tolerances_for("fp8")


# --- tiny seed architectures ---------------------------------------------------------------------------------


def test_fp32_export_passes_with_near_identical_logits(tiny_decoders: TinyDecoders, seed_name: str) -> None:
    export = tiny_decoders.export(seed_name, "fp32")
    report = check_decoder_parity(export.source, export.output_dir, PROMPTS, precision="fp32", max_new_tokens=8)
    assert report.passed and report.failures == ()
    assert report.max_abs_diff < 1e-4
    assert report.min_cosine > 0.99999
    assert report.top1_agreement == 1.0
    assert report.token_agreement == 1.0 and report.first_divergence is None
    assert [len(item.reference_tokens) for item in report.prompts] == [8, 8]
    assert all(item.reference_tokens == item.onnx_tokens for item in report.prompts)
    assert report.prompts[0].input_tokens > 5  # the chat template is part of the input


def test_altered_initializer_fails_parity(tiny_decoders: TinyDecoders, seed_name: str, tmp_path: Path) -> None:
    export = tiny_decoders.export(seed_name, "fp32")
    broken = Path(shutil.copytree(export.output_dir, tmp_path / "broken"))
    name = scale_initializer(broken, "layers.0.mlp.down_proj", 1.5)
    assert name.endswith("weight")
    report = check_decoder_parity(export.source, broken, PROMPTS, precision="fp32", max_new_tokens=4)
    assert report.passed is False
    assert report.max_abs_diff > 1e-2
    assert any("max abs logit diff" in failure for failure in report.failures)
    assert report.to_dict()["passed"] is False


def test_int4_export_passes_its_looser_tolerance(tiny_decoders: TinyDecoders, seed_name: str) -> None:
    export = tiny_decoders.export(seed_name, "int4")
    report = check_decoder_parity(export.source, export.output_dir, PROMPTS, precision="int4", max_new_tokens=4)
    assert report.passed
    assert TOLERANCES["int4"].min_cosine <= report.min_cosine < 0.9999  # quantized: close, not identical
    assert report.max_abs_diff > 1e-3


def test_int4_with_a_wrecked_layer_fails(tiny_decoders: TinyDecoders, tmp_path: Path) -> None:
    export = tiny_decoders.export("tinyllama-1.1b", "int4")
    broken = Path(shutil.copytree(export.output_dir, tmp_path / "broken"))
    scale_initializer(broken, "layers.0.input_layernorm.weight", 20.0)
    report = check_decoder_parity(export.source, broken, PROMPTS, precision="int4", max_new_tokens=2)
    assert not report.passed
    assert any("cosine" in failure for failure in report.failures)


def test_phi3_longrope_agrees_beyond_the_original_context(tiny_decoders: TinyDecoders) -> None:
    export = tiny_decoders.export("phi-3-mini-128k", "fp32")
    long_prompt = " ".join(["passport"] * 4200)  # over 4096 tokens: the long rotary factors apply
    report = check_decoder_parity(export.source, export.output_dir, [long_prompt], precision="fp32", max_new_tokens=2)
    assert report.prompts[0].input_tokens > 4096
    assert report.passed, report.failures


def test_report_to_dict_is_json_with_the_figures_convert_shows(tiny_decoders: TinyDecoders) -> None:
    export = tiny_decoders.export("tinyllama-1.1b", "fp32")
    report = check_decoder_parity(export.source, export.output_dir, [PROMPT], precision="fp32", max_new_tokens=3)
    document = report.to_dict()
    assert json.loads(json.dumps(document)) == document
    for key in ("max_abs_diff", "min_cosine", "mean_cosine", "top1_agreement", "token_agreement", "passed"):
        assert key in document
    assert document["tolerances"] == {"max_abs_diff": 1e-2, "min_cosine": 0.9999}
    assert document["prompts"][0]["prompt"] == PROMPT
    assert len(document["prompts"][0]["onnx_tokens"]) == 3


def test_bad_input_is_user_error(tiny_decoders: TinyDecoders, tmp_path: Path) -> None:
    export = tiny_decoders.export("tinyllama-1.1b", "fp32")
    with pytest.raises(UserError, match="at least one prompt"):
        check_decoder_parity(export.source, export.output_dir, [], precision="fp32")
    with pytest.raises(UserError, match="unknown precision"):
        check_decoder_parity(export.source, export.output_dir, [PROMPT], precision="fp64")
    with pytest.raises(UserError, match=r"no genai_config\.json"):
        check_decoder_parity(export.source, tmp_path, [PROMPT], precision="fp32")
    corrupt = Path(shutil.copytree(export.output_dir, tmp_path / "corrupt"))
    (corrupt / "model.onnx").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="cannot load") as raised:
        check_decoder_parity(export.source, corrupt, [PROMPT], precision="fp32")
    assert "\n" not in str(raised.value)


# --- the real bundled SmolLM2 GGUF -----------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_int4_parity_against_the_dequantized_gguf(smollm2_int4: DecoderExport, smollm2_gguf: Path) -> None:
    report: ParityReport = check_decoder_parity(
        smollm2_gguf, smollm2_int4.output_dir, PARITY_PROMPTS[:2], precision="int4", max_new_tokens=8
    )
    assert report.passed, report.failures
    # Measured 0.943 and 0.944 (centred cosine) with onnxruntime-genai 0.18: int4 rounding of a 135M model.
    assert 0.85 < report.min_cosine < 0.99
    assert report.prompts[0].input_tokens > 30  # SmolLM2's chat template with its default system message
