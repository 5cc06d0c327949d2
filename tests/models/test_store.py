"""The model store: variants with manifests, written atomically, resolved as ``model@variant``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.models.store import (
    MANIFEST,
    ModelStore,
    check_variant_name,
    sha256_file,
    sha256_tree,
    split_reference,
    write_manifest,
)
from tests.conftest import RunCli

MODEL = "smollm2-135m-instruct"


def _make_variant(store: ModelStore, name: str = "onnx-int4", content: bytes = b"weights") -> Path:
    with store.writing(MODEL, name) as folder:
        (folder / "model.onnx").write_bytes(content)
        (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
        write_manifest(folder, {"model": MODEL, "variant": name, "format": "onnx", "method": "test export"})
    return store.folder(MODEL, name)


def test_a_written_variant_has_a_manifest_whose_sizes_and_digests_match_its_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    folder = _make_variant(store)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["files"]["model.onnx"] == {"bytes": 7, "sha256": sha256_file(folder / "model.onnx")}
    assert manifest["size_bytes"] == 7 + 2
    assert manifest["format"] == "onnx"
    (variant,) = store.variants(MODEL)
    assert variant.reference == f"{MODEL}@onnx-int4"
    assert variant.verify() == []


def test_verify_names_a_file_altered_after_it_was_stored(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    folder = _make_variant(store)
    (folder / "model.onnx").write_bytes(b"WEIGHTS")
    assert store.get(MODEL, "onnx-int4").verify() == ["model.onnx differs from its manifest"]


def test_a_failure_while_writing_leaves_no_variant_and_no_temporary_folder(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(RuntimeError, match="export broke"), store.writing(MODEL, "onnx-fp32") as folder:
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export broke")
    assert not store.folder(MODEL, "onnx-fp32").exists()
    assert list((tmp_path / "models" / MODEL).iterdir()) == []
    assert store.variants() == []


def test_a_folder_finished_without_a_manifest_is_not_stored(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(RuntimeError, match="without a manifest"), store.writing(MODEL, "onnx-fp32") as folder:
        (folder / "model.onnx").write_bytes(b"x")
    assert not store.folder(MODEL, "onnx-fp32").exists()


def test_an_existing_variant_is_kept_unless_replacement_is_asked_for(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    _make_variant(store, content=b"first")
    with pytest.raises(UserError, match="--force"), store.writing(MODEL, "onnx-int4"):
        pass
    assert (store.folder(MODEL, "onnx-int4") / "model.onnx").read_bytes() == b"first"
    with store.writing(MODEL, "onnx-int4", replace=True) as folder:
        (folder / "model.onnx").write_bytes(b"second")
        write_manifest(folder, {"model": MODEL, "variant": "onnx-int4", "format": "onnx"})
    assert (store.folder(MODEL, "onnx-int4") / "model.onnx").read_bytes() == b"second"
    assert [p.name for p in (tmp_path / "models" / MODEL).iterdir()] == ["onnx-int4"]


def test_folders_without_a_readable_manifest_are_skipped(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    _make_variant(store)
    broken = tmp_path / "models" / MODEL / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json", encoding="utf-8")
    assert [v.name for v in store.variants()] == ["onnx-int4"]


def test_an_unknown_variant_lists_the_ones_present(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    _make_variant(store)
    with pytest.raises(UserError, match=r"no variant 'onnx-int8'.*onnx-int4"):
        store.get(MODEL, "onnx-int8")


@pytest.mark.parametrize("name", ["", "ONNX", "a/b", "../up", "-lead", "x" * 65])
def test_malformed_variant_names_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="not valid"):
        check_variant_name(name)


def test_references_split_at_the_at_sign() -> None:
    assert split_reference("smollm2@onnx-int4") == ("smollm2", "onnx-int4")
    assert split_reference("smollm2") == ("smollm2", None)


def test_a_tree_digest_changes_with_any_file_but_ignores_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"b")
    before = sha256_tree(tmp_path)
    (tmp_path / MANIFEST).write_text("{}", encoding="utf-8")
    assert sha256_tree(tmp_path) == before
    (tmp_path / "sub" / "b.bin").write_bytes(b"B")
    assert sha256_tree(tmp_path) != before


def test_a_variant_resolves_to_a_card_with_the_parents_facts_and_the_variants_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    folder = _make_variant(store)
    card = default_registry().resolve("smollm2@onnx-int4", tmp_path / "models")
    parent = default_registry().resolve(MODEL)
    assert card.name == f"{MODEL}@onnx-int4"
    assert card.kind == parent.kind and card.parameters == parent.parameters and card.chat == parent.chat
    assert card.backends == ("onnx",)
    assert card.source.locate(tmp_path) == folder


def test_a_variant_of_an_unknown_model_or_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown model 'nosuch'"):
        default_registry().resolve("nosuch@onnx-int4", tmp_path)
    with pytest.raises(UserError, match="no variant 'onnx-int4'"):
        default_registry().resolve("smollm2@onnx-int4", tmp_path / "empty")


def test_models_lists_the_variants_in_the_store(run_cli: RunCli, tmp_path: Path) -> None:
    _make_variant(ModelStore(tmp_path / "data" / "models"))
    table = run_cli("models")
    assert table.code == 0, table.err
    assert "onnx-int4" in table.out
    listed = run_cli("models", "--json")
    by_name = {card["name"]: card for card in json.loads(listed.out)}
    (variant,) = by_name[MODEL]["variants"]
    assert variant["reference"] == f"{MODEL}@onnx-int4"
    assert variant["format"] == "onnx" and variant["size_bytes"] == 9
    assert by_name["gemma-3-270m"]["variants"] == []


def test_info_shows_a_variant(run_cli: RunCli, tmp_path: Path) -> None:
    _make_variant(ModelStore(tmp_path / "data" / "models"))
    result = run_cli("info", f"{MODEL}@onnx-int4", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["name"] == f"{MODEL}@onnx-int4"
    missing = run_cli("info", f"{MODEL}@onnx-int8")
    assert missing.code != 0 and "no variant 'onnx-int8'" in missing.err
    assert "Traceback" not in missing.err
