"""Quantization wiring: choosing a method, naming the variant, storing it with its manifest, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.models.store import ModelStore, sha256_tree
from slm_eval.optimize import quantize_methods
from slm_eval.optimize.quantize import (
    QuantizeRequest,
    default_variant_name,
    plan_quantize,
    quantize,
    sweep_requests,
)
from slm_eval.optimize.quantize_methods import METHODS, QuantizeJob, QuantizeMethod, QuantizeResult, choose_method
from tests.conftest import RunCli

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"


def _no_cuda() -> bool:
    return False


def _cuda() -> bool:
    return True


# --- choosing a method ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "bits", "kind", "source", "expected"),
    [
        ("onnx", 4, "decoder", "gguf", "onnx-matmulnbits"),
        ("onnx", 8, "encoder", "transformers", "onnx-matmulnbits"),
        ("pytorch", 8, "decoder", "gguf", "torchao"),
        ("gguf", 4, "decoder", "gguf", "llama-quantize"),
    ],
)
def test_the_default_method_is_the_best_that_runs_here(
    fmt: Any, bits: int, kind: str, source: str, expected: str
) -> None:
    assert choose_method(fmt, None, bits, kind, source, _no_cuda).name == expected


def test_cuda_methods_come_first_when_cuda_is_present() -> None:
    assert choose_method("pytorch", None, 4, "decoder", "gguf", _cuda).name == "bnb"


def test_unsupported_bits_list_the_supported_ones() -> None:
    with pytest.raises(UserError, match=r"--bits 3 is not supported for gguf: choose one of 4, 8"):
        choose_method("gguf", None, 3, "decoder", "gguf", _no_cuda)
    with pytest.raises(UserError, match=r"--bits 4 is not supported by onnx-dynamic-int8: choose one of 8"):
        choose_method("onnx", "onnx-dynamic-int8", 4, "encoder", "transformers", _no_cuda)


def test_a_cuda_method_on_a_cpu_machine_names_the_cpu_alternative() -> None:
    alternative = METHODS["bnb"].cpu_alternative
    with pytest.raises(UserError, match=rf"needs a CUDA GPU.*--method {alternative}"):
        choose_method("pytorch", "bnb", 4, "decoder", "gguf", _no_cuda)


def test_a_method_of_another_format_or_kind_is_refused() -> None:
    with pytest.raises(UserError, match="makes gguf variants, not onnx"):
        choose_method("onnx", "llama-quantize", 4, "decoder", "gguf", _no_cuda)
    with pytest.raises(UserError, match="quantizes decoder models, not encoders"):
        choose_method("gguf", "llama-quantize", 4, "encoder", "transformers", _no_cuda)
    with pytest.raises(UserError, match="unknown --method 'awq'"):
        choose_method("onnx", "awq", 4, "decoder", "gguf", _no_cuda)


# --- planning -----------------------------------------------------------------------------------------


def test_an_api_model_cannot_be_quantized(tmp_path: Path) -> None:
    card = default_registry().resolve("grok-3-mini-fast")
    with pytest.raises(UserError, match="remote API: it has no weights here to quantize"):
        plan_quantize(QuantizeRequest("grok-3-mini-fast", bits=4), card, tmp_path, _no_cuda)


def test_the_default_format_is_the_models_own_and_the_name_says_what_the_variant_is(tmp_path: Path) -> None:
    smollm2 = default_registry().resolve(SMOLLM2)
    plan = plan_quantize(QuantizeRequest(SMOLLM2, bits=4), smollm2, tmp_path, _no_cuda)
    assert (plan.format, plan.method.name, plan.quant_type, plan.variant) == (
        "gguf",
        "llama-quantize",
        "Q4_K_M",
        "gguf-q4_k_m",
    )
    onnx = plan_quantize(QuantizeRequest(SMOLLM2, bits=4, format="onnx", block_size=64), smollm2, tmp_path, _no_cuda)
    assert onnx.variant == "onnx-int4-b64"
    minilm = default_registry().resolve(MINILM)
    dynamic = plan_quantize(
        QuantizeRequest(MINILM, bits=8, format="onnx", method="onnx-dynamic-int8"), minilm, tmp_path, _no_cuda
    )
    assert dynamic.variant == "onnx-qa-int8-dynamic"


def test_options_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    smollm2 = default_registry().resolve(SMOLLM2)
    with pytest.raises(UserError, match="--block-size 48 is not taken by onnx-matmulnbits"):
        plan_quantize(QuantizeRequest(SMOLLM2, bits=4, format="onnx", block_size=48), smollm2, tmp_path, _no_cuda)
    with pytest.raises(UserError, match=r"--type names a llama\.cpp quantization type"):
        plan_quantize(QuantizeRequest(SMOLLM2, bits=4, format="onnx", quant_type="Q4_0"), smollm2, tmp_path, _no_cuda)
    with pytest.raises(UserError, match="unknown --format 'tflite'"):
        plan_quantize(QuantizeRequest(SMOLLM2, bits=4, format="tflite"), smollm2, tmp_path, _no_cuda)


def test_variant_names_for_each_method() -> None:
    assert default_variant_name(METHODS["torch-dynamic-int8"], 8, None, None, "decoder", "qa") == "pytorch-int8-dynamic"
    assert default_variant_name(METHODS["llama-quantize"], 8, None, "Q8_0", "decoder", "qa") == "gguf-q8_0"
    assert default_variant_name(METHODS["onnx-matmulnbits"], 4, None, None, "encoder", "ner") == "onnx-ner-int4"


def test_a_sweep_covers_each_runnable_method_and_bit_width() -> None:
    minilm = default_registry().resolve(MINILM)
    requests = sweep_requests(minilm, allow_requantize=False, task="qa", seed=0, cuda=False)
    pairs = {(r.method, r.bits) for r in requests}
    assert ("onnx-dynamic-int8", 8) in pairs and ("onnx-matmulnbits", 4) in pairs
    assert not any(method == "bnb" for method, _ in pairs)
    assert not any(method == "llama-quantize" for method, _ in pairs)  # encoders have no GGUF path
    smollm2 = default_registry().resolve(SMOLLM2)
    without = {r.method for r in sweep_requests(smollm2, allow_requantize=False, task="qa", seed=0, cuda=False)}
    with_requantize = {r.method for r in sweep_requests(smollm2, allow_requantize=True, task="qa", seed=0, cuda=False)}
    assert "llama-quantize" not in without and "llama-quantize" in with_requantize


# --- storing, with a scripted method -------------------------------------------------------------------


def _scripted(monkeypatch: pytest.MonkeyPatch, run: Any) -> None:
    module = type("Scripted", (), {"run": staticmethod(run)})
    monkeypatch.setattr(QuantizeMethod, "load_runner", lambda self: module.run)


def _half_size(job: QuantizeJob) -> QuantizeResult:
    size = job.source.stat().st_size if job.source.is_file() else 1000
    (job.output_dir / "model-q.gguf").write_bytes(b"q" * (size // 2))
    return QuantizeResult(
        entry="model-q.gguf",
        quant_type="Q4_K_M",
        kept_precision=("output.weight", "norms"),
        requantized=job.allow_requantize,
        facts={"tool_versions": {"llama-cpp-python": "test"}, "nthread": 2},
    )


def test_a_variant_is_stored_with_a_manifest_of_its_parent_method_and_ratios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted(monkeypatch, _half_size)
    card = default_registry().resolve(SMOLLM2)
    plan = plan_quantize(QuantizeRequest(SMOLLM2, bits=4, allow_requantize=True), card, tmp_path, _no_cuda)
    store = ModelStore(tmp_path / "models")
    outcome = quantize(plan, store, tmp_path, suitability={"verdict": "warning"})
    manifest = outcome.variant.manifest
    assert outcome.variant.reference == f"{SMOLLM2}@gguf-q4_k_m"
    assert manifest["format"] == "gguf" and manifest["entry"] == "model-q.gguf"
    assert manifest["method"] == "llama-quantize" and manifest["bits"] == 4 and manifest["quant_type"] == "Q4_K_M"
    assert manifest["source"]["sha256"] == sha256_tree(plan.source)
    assert manifest["source"]["bytes"] == plan.source.stat().st_size
    assert manifest["compression_ratio"]["value"] == pytest.approx(0.5, abs=0.01)
    assert manifest["compression_ratio"]["label"] == "measured"
    assert manifest["size_ratio_to_fp32"]["label"] == "estimated"
    assert manifest["requantized"] is True and manifest["kept_precision"] == ["output.weight", "norms"]
    assert manifest["tool_versions"] == {"llama-cpp-python": "test"}
    assert manifest["gate"] == {"status": "pending"} and manifest["suitability"] == {"verdict": "warning"}
    assert outcome.variant.verify() == []
    variant_card = default_registry().resolve(outcome.variant.reference, tmp_path / "models")
    assert variant_card.source.locate(tmp_path) == outcome.variant.path / "model-q.gguf"


def test_a_failed_or_interrupted_quantization_leaves_nothing_in_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(job: QuantizeJob) -> QuantizeResult:
        (job.output_dir / "model-q.gguf").write_bytes(b"half written")
        raise KeyboardInterrupt

    _scripted(monkeypatch, interrupted)
    card = default_registry().resolve(SMOLLM2)
    plan = plan_quantize(QuantizeRequest(SMOLLM2, bits=8, allow_requantize=True), card, tmp_path, _no_cuda)
    store = ModelStore(tmp_path / "models")
    with pytest.raises(KeyboardInterrupt):
        quantize(plan, store, tmp_path, suitability={})
    assert store.variants() == []
    assert list((tmp_path / "models" / SMOLLM2).iterdir()) == []


def test_the_catalogue_names_an_install_command_for_every_method() -> None:
    for method in quantize_methods.METHODS.values():
        assert method.install.startswith("pip install"), method.name
        assert method.bits and set(method.bits) <= {4, 8}, method.name


def test_quantize_on_the_command_line_reports_bad_input_in_one_line(run_cli: RunCli) -> None:
    cases = [
        (("--model", "grok-3-mini-fast", "--bits", "4"), "remote API"),
        (("--model", SMOLLM2, "--bits", "3"), "--bits 3 is not supported for gguf: choose one of 4, 8"),
        (("--model", SMOLLM2, "--bits", "4", "--format", "pytorch", "--method", "bnb"), "needs a CUDA GPU"),
        (("--model", SMOLLM2), "--bits is required"),
        (("--model", SMOLLM2, "--sweep", "--bits", "4"), "--sweep tries every method"),
    ]
    for argv, expected in cases:
        result = run_cli("quantize", *argv)
        assert result.code != 0, argv
        assert expected in result.err and "Traceback" not in result.err, (argv, result.err)


def test_json_is_valid_for_a_stored_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted(monkeypatch, _half_size)
    card = default_registry().resolve(SMOLLM2)
    plan = plan_quantize(QuantizeRequest(SMOLLM2, bits=8, allow_requantize=True), card, tmp_path, _no_cuda)
    outcome = quantize(plan, ModelStore(tmp_path / "models"), tmp_path, suitability={})
    assert json.loads((outcome.variant.path / "manifest.json").read_text(encoding="utf-8"))["variant"] == "gguf-q8_0"


def test_a_sweep_can_keep_one_format() -> None:
    minilm = default_registry().resolve(MINILM)
    requests = sweep_requests(minilm, allow_requantize=False, task="qa", seed=0, cuda=False, only="onnx")
    assert {r.format for r in requests} == {"onnx"}
    assert {(r.method, r.bits) for r in requests} == {
        ("onnx-matmulnbits", 4),
        ("onnx-matmulnbits", 8),
        ("onnx-dynamic-int8", 8),
    }
