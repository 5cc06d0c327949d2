"""``slm-eval convert`` end to end on the bundled MiniLM: export, parity, store, manifest, and running the variant."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_eval.cli import main
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.models.store import ModelStore, sha256_tree
from slm_eval.optimize.convert import ConvertRequest, check_request, convert, variant_name
from tests.conftest import RunCli
from tests.support import exit_code

pytestmark = pytest.mark.slow
MODEL = "all-minilm-l6-v2"
CONTEXT = "Vehicle ATY-754 was searched at Dover. Driver Nathaniel Balogun was detained by the officers."


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return exit_code(exc)
    return 0


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """MiniLM converted once (qa head) by the real CLI in a fresh working folder."""
    root = tmp_path_factory.mktemp("convert")
    previous = Path.cwd()
    os.chdir(root)
    try:
        assert _run(["convert", "--model", "minilm", "--task", "qa", "--json"]) == 0
        manifest = json.loads((root / "data/models" / MODEL / "onnx-qa/manifest.json").read_text(encoding="utf-8"))
        yield root, manifest
    finally:
        os.chdir(previous)


def test_the_variant_lands_in_the_store_with_a_manifest_that_describes_it(
    converted: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = converted
    source = default_registry().resolve(MODEL).source.locate(root)
    assert manifest["model"] == MODEL and manifest["variant"] == "onnx-qa"
    assert manifest["format"] == "onnx" and manifest["kind"] == "encoder" and manifest["encoder_task"] == "qa"
    assert manifest["source"]["sha256"] == sha256_tree(source)
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(manifest["tool_versions"])
    assert manifest["parity"]["passed"] is True
    assert manifest["parity"]["max_abs_diff"] < 1e-3
    assert manifest["export"]["ops_after"] and manifest["export"]["ops_before"]
    assert {"model.onnx", "head.json", "tokenizer.json", "config.json"} <= set(manifest["files"])
    assert ".tmp-" not in json.dumps(manifest)
    variant = ModelStore(root / "data/models").get(MODEL, "onnx-qa")
    assert variant.verify() == []
    assert variant.size_bytes == sum(int(item["bytes"]) for item in manifest["files"].values())


def test_the_variant_answers_like_the_original_through_quick_test(
    converted: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    root, _ = converted
    monkeypatch.chdir(root)
    answers = []
    for model in (MODEL, f"{MODEL}@onnx-qa"):
        capfd.readouterr()
        code = _run(["quick-test", "--model", model, "--context", CONTEXT, "-i", "Who was detained?", "--json"])
        out, err = capfd.readouterr()
        assert code == 0, err
        answers.append(json.loads(out))
    original, variant = answers
    assert variant["backend"] == "onnx" and original["backend"] == "transformers"
    assert variant["results"][0]["output"] == original["results"][0]["output"]
    assert variant["results"][0]["detail"] == original["results"][0]["detail"]
    assert variant["head_trained"] is False and variant["warning"]


def test_models_lists_the_converted_variant(converted: tuple[Path, dict[str, Any]], run_cli: RunCli) -> None:
    root, _ = converted
    result = run_cli("--config", str(_config_pointing_at(root)), "models", "--json")
    assert result.code == 0, result.err
    (card,) = [card for card in json.loads(result.out) if card["name"] == MODEL]
    assert [v["reference"] for v in card["variants"]] == [f"{MODEL}@onnx-qa"]
    assert card["variants"][0]["parity_passed"] is True


def _config_pointing_at(root: Path) -> Path:
    config = root / "config.json"
    config.write_text(json.dumps({"paths": {"models": str(root / "data/models")}}), encoding="utf-8")
    return config


def test_an_existing_variant_is_not_replaced_without_force(converted: tuple[Path, dict[str, Any]]) -> None:
    root, _ = converted
    card = default_registry().resolve(MODEL)
    with pytest.raises(UserError, match="--force"):
        convert(ConvertRequest(model=MODEL), card, ModelStore(root / "data/models"), root / "cache")


def test_a_failed_parity_check_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export is altered before the real parity check runs: the check fails and no variant is left."""
    import onnx
    from onnx import numpy_helper

    from slm_eval.optimize import encoder_parity

    real_check = encoder_parity.check_encoder_parity

    def altered_then_checked(card: Any, source: Path, onnx_dir: Path, **kwargs: Any) -> Any:
        model = onnx.load(str(onnx_dir / "model.onnx"))
        weight = max(model.graph.initializer, key=lambda tensor: int(numpy_helper.to_array(tensor).size))
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
        onnx.save(model, str(onnx_dir / "model.onnx"))
        return real_check(card, source, onnx_dir, **kwargs)

    monkeypatch.setattr(encoder_parity, "check_encoder_parity", altered_then_checked)
    store = ModelStore(tmp_path / "models")
    with pytest.raises(UserError, match=r"parity check failed.*not stored"):
        convert(ConvertRequest(model=MODEL, task="classify"), default_registry().resolve(MODEL), store, tmp_path)
    assert store.variants() == []
    assert not any((tmp_path / "models" / MODEL).iterdir())


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("grok-3-mini-fast", {}, "no weights to convert"),
        (MODEL, {"precision": "int4"}, "encoders export in fp32"),
        (MODEL, {"format": "tflite"}, "unknown --format 'tflite'"),
        (MODEL, {"target": "tpu"}, "unknown --target 'tpu'"),
        ("smollm2", {"precision": "int3"}, "unknown --precision 'int3'"),
    ],
)
def test_bad_requests_are_refused_before_any_work(model: str, options: dict[str, Any], message: str) -> None:
    card = default_registry().resolve(model)
    with pytest.raises(UserError, match=message):
        check_request(card, ConvertRequest(model=model, **options))


def test_variant_names_say_what_the_variant_is() -> None:
    registry = default_registry()
    assert variant_name(registry.resolve("smollm2"), ConvertRequest("smollm2", precision="int4"), "int4") == "onnx-int4"
    encoder = registry.resolve(MODEL)
    assert variant_name(encoder, ConvertRequest(MODEL, task="ner", target="cuda"), "fp32") == "onnx-ner-cuda"
    assert variant_name(encoder, ConvertRequest(MODEL, name="mine"), "fp32") == "mine"


def test_convert_on_the_command_line_reports_bad_input_in_one_line(run_cli: RunCli) -> None:
    result = run_cli("convert", "--model", "grok-3-mini-fast")
    assert result.code != 0
    assert "no weights to convert" in result.err and "Traceback" not in result.err
    unknown = run_cli("convert", "--model", MODEL, "--task", "summarise")
    assert unknown.code != 0 and "unknown encoder task 'summarise'" in unknown.err
