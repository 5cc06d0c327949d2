"""The accuracy gate on the real SmolLM2: an identical variant passes, a deliberately broken one fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slm_eval.devices.profiles import default_evaluation_config_path, load_evaluation_config
from slm_eval.models.catalogue import default_registry
from slm_eval.models.store import ModelStore, write_manifest
from slm_eval.optimize.accuracy_gate import GateOutcome, GateScore, run_gate
from slm_eval.optimize.quantize import record_gate

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
LIMIT = 4


def _store_gguf(store: ModelStore, name: str, source: Path, *, broken: bool) -> None:
    """A GGUF variant: the bundled file copied as it is, or with its layers' MLP weights in reverse order."""
    with store.writing(MODEL, name) as folder:
        target = folder / source.name
        shutil.copyfile(source, target)
        if broken:
            from gguf import GGUFReader

            tensors = [t for t in GGUFReader(str(source)).tensors if t.name.endswith("ffn_down.weight")]
            regions = [(int(t.data_offset), int(t.n_bytes)) for t in sorted(tensors, key=lambda t: t.name)]
            data = source.read_bytes()
            with target.open("r+b") as handle:
                for (offset, size), (other, _) in zip(regions, reversed(regions), strict=True):
                    handle.seek(offset)
                    handle.write(data[other : other + size])
        write_manifest(folder, {"model": MODEL, "variant": name, "format": "gguf", "method": "test"}, entry=source.name)


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> tuple[GateOutcome, GateOutcome, Path]:
    root = tmp_path_factory.mktemp("gate")
    store = ModelStore(root / "models")
    registry = default_registry()
    source = registry.resolve(MODEL).source.locate(root)
    _store_gguf(store, "gguf-same", source, broken=False)
    _store_gguf(store, "gguf-broken", source, broken=True)
    config = load_evaluation_config(default_evaluation_config_path())
    outcomes = []
    for name in ("gguf-same", "gguf-broken"):
        outcomes.append(
            run_gate(
                registry.resolve(MODEL),
                registry.resolve(f"{MODEL}@{name}", root / "models"),
                folder=root / "gates",
                config=config,
                cache_dir=root / "cache",
                models_dir=root / "models",
                dataset="border-qa",
                limit=LIMIT,
            )
        )
    return outcomes[0], outcomes[1], root


def test_an_identical_variant_keeps_its_parents_score_and_passes(gated: tuple[GateOutcome, GateOutcome, Path]) -> None:
    same, _, _ = gated
    assert same.parent.score is not None and same.parent.score > 0
    assert same.variant.score == pytest.approx(same.parent.score)
    assert same.relative == pytest.approx(1.0)
    assert same.status == "passed"
    assert same.parent.examples == same.variant.examples == LIMIT
    assert same.variant.decode_tokens_per_s and same.variant.peak_memory_mib and same.variant.size_mib


def test_a_broken_variant_fails_the_gate_and_is_kept_marked(gated: tuple[GateOutcome, GateOutcome, Path]) -> None:
    same, broken, root = gated
    assert broken.status == "failed"
    assert broken.relative is not None and broken.relative < 0.99
    assert "keeps only" in broken.reason
    # the parent ran once: the second gate reused its runs
    assert broken.parent.score == same.parent.score
    store = ModelStore(root / "models")
    variant = record_gate(store.get(MODEL, "gguf-broken"), broken.to_dict())
    reread = store.get(MODEL, "gguf-broken")
    assert reread.manifest["gate"]["status"] == "failed" and reread.manifest["gate"]["passed"] is False
    assert reread.verify() == [] and variant.manifest == reread.manifest


def test_a_parent_scoring_zero_makes_the_gate_not_applicable() -> None:
    zero = GateScore("parent", 0.0, {}, 4, None, None, None, None)
    some = GateScore("variant", 0.2, {}, 4, None, None, None, None)
    outcome = GateOutcome(zero, some, 0.99, Path("unused"))
    assert outcome.relative is None and outcome.status == "not applicable"
    assert "undefined" in outcome.reason
    assert outcome.to_dict()["passed"] is False
