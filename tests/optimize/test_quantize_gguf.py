"""llama-quantize on the real bundled SmolLM2 GGUF, and through llama.cpp's converter on a tiny random Llama."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_eval.backends.base import GenerationRequest, LoadOptions
from slm_eval.errors import UserError
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard
from slm_eval.optimize.quantize_methods import METHODS, QuantizeJob, QuantizeResult

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from slm_eval.optimize import gguf_converter
from slm_eval.optimize.quantize_gguf import choose_type, inspect_gguf, quantize_gguf

REPO = Path(__file__).resolve().parents[2]
# Where `python -m slm_eval.optimize.gguf_converter` puts the converter by default (config's paths.cache).
REPO_CACHE = REPO / "data" / "cache"


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return default_registry().resolve("smollm2-135m-instruct")


def _job(
    card: ModelCard,
    source: Path,
    output: Path,
    bits: int,
    *,
    quant_type: str | None = None,
    allow_requantize: bool = False,
    source_format: str = "gguf",
) -> QuantizeJob:
    return QuantizeJob(
        card=card,
        source=source,
        source_format=source_format,
        bits=bits,
        output_dir=output,
        cache_dir=output.parent / "cache",
        quant_type=quant_type,
        allow_requantize=allow_requantize,
    )


@pytest.fixture(scope="module")
def requantized(
    card: ModelCard, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, QuantizeResult]]:
    """SmolLM2 (Q4_1) requantized to Q8_0 and Q4_K_M once (a few seconds each)."""
    made = {}
    for bits, quant_type in ((8, None), (4, "q4_k_m")):
        output = tmp_path_factory.mktemp(f"gguf-{bits}")
        result = quantize_gguf(_job(card, smollm2_gguf, output, bits, quant_type=quant_type, allow_requantize=True))
        assert result.entry is not None
        made[result.quant_type] = (output / result.entry, result)
    return made


def test_the_catalogue_entry_points_here() -> None:
    method = METHODS["llama-quantize"]
    assert method.load_runner() is quantize_gguf


def test_the_bundled_model_is_seen_as_q4_1(smollm2_gguf: Path) -> None:
    summary = inspect_gguf(smollm2_gguf)
    assert summary.file_type == "Q4_1"
    assert summary.quantized
    assert summary.architecture == "llama"
    assert summary.tensor_types["Q4_1"] == 210


def test_q8_0_from_the_q4_1_source(requantized: dict[str, tuple[Path, QuantizeResult]], smollm2_gguf: Path) -> None:
    path, result = requantized["Q8_0"]
    assert path.name == "smollm2-135m-instruct-Q8_0.gguf"
    assert result.requantized
    facts = result.facts
    assert facts["source_file_type"] == "Q4_1"
    assert facts["file_type"] == "Q8_0"
    assert facts["tensor_types"] == {"Q8_0": 211, "F32": 61}
    assert result.kept_precision == ("norms: F32",)
    # Q8_0 (8.5 bits a weight) is larger than the Q4_1 source (5 bits) it was made from.
    assert 1.3 * smollm2_gguf.stat().st_size < path.stat().st_size == facts["bytes"] < 160_000_000
    assert facts["quantize_seconds"]["label"] == "measured"
    assert facts["tool_versions"]["llama-cpp-python"]


def test_q4_k_m_keeps_llama_cpp_s_mix(requantized: dict[str, tuple[Path, QuantizeResult]]) -> None:
    path, result = requantized["Q4_K_M"]
    groups = result.facts["groups"]
    assert result.facts["file_type"] == "Q4_K_M"
    assert groups["norms"] == {"F32": 61}
    assert groups["token_embd.weight"] == {"Q8_0": 1}
    # ffn_down (1536-wide rows) takes K-quants: Q6_K in half of the layers, Q4_K in the rest.
    assert groups["ffn_down.weight"] == {"Q4_K": 16, "Q6_K": 14}
    # SmolLM2's 576-wide rows are no multiple of 256, so llama.cpp falls back to Q5_0 for them.
    assert groups["attn_q.weight"] == {"Q5_0": 30}
    assert result.facts["k_quant_fallback_tensors"] == 181
    assert "norms: F32" in result.kept_precision
    assert "ffn_down.weight: Q6_K x14" in result.kept_precision
    assert 80_000_000 < path.stat().st_size < 120_000_000


@pytest.mark.parametrize("quant_type", ["Q8_0", "Q4_K_M"])
def test_the_output_loads_and_generates(
    requantized: dict[str, tuple[Path, QuantizeResult]], card: ModelCard, quant_type: str
) -> None:
    from slm_eval.backends.llamacpp import load

    path, _ = requantized[quant_type]
    backend = load(card, path, LoadOptions(threads=2, context_length=256))
    try:
        [generation] = backend.generate([GenerationRequest(prompt="What is a passport?", max_new_tokens=8)])
    finally:
        backend.close()
    assert generation.output_tokens > 0
    assert generation.text.strip()


def test_an_already_quantized_source_is_refused_in_one_line(
    card: ModelCard, smollm2_gguf: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    with pytest.raises(UserError) as raised:
        quantize_gguf(_job(card, smollm2_gguf, output, 4))
    message = str(raised.value)
    assert "already quantized (Q4_1)" in message
    assert "--allow-requantize" in message
    assert "\n" not in message
    assert not any(output.iterdir())


@pytest.mark.parametrize(
    ("bits", "quant_type", "expected"),
    [
        (8, "Q4_K_M", "Q4_K_M is a 4-bit type, not 8-bit: for --bits 8 choose one of Q8_0"),
        (4, "q8_0", "Q8_0 is a 8-bit type, not 4-bit"),
        (4, "Q5_K_M", "Q5_K_M is a 5-bit type"),
        (4, "Q9_Z", "unknown GGUF type 'Q9_Z'"),
    ],
)
def test_a_type_of_other_bits_is_refused(bits: int, quant_type: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected) as raised:
        choose_type(bits, quant_type)
    assert "Q4_K_M" in str(raised.value) or bits == 8


def test_types_are_case_insensitive_with_defaults_per_bits() -> None:
    assert choose_type(8, None) == "Q8_0"
    assert choose_type(4, None) == "Q4_K_M"
    assert choose_type(4, " q4_0 ") == "Q4_0"


def test_a_wrong_type_fails_before_any_work(card: ModelCard, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="4-bit type"):
        quantize_gguf(_job(card, tmp_path / "missing.gguf", tmp_path / "out", 8, quant_type="Q4_0"))


@pytest.mark.parametrize("damage", ["not-gguf", "truncated"])
def test_a_corrupt_gguf_source_is_a_user_error(
    card: ModelCard, smollm2_gguf: Path, tmp_path: Path, damage: str
) -> None:
    source = tmp_path / "broken.gguf"
    if damage == "not-gguf":
        source.write_bytes(b"PK\x03\x04 this is a zip file, not a model")
    else:
        with smollm2_gguf.open("rb") as handle:
            source.write_bytes(handle.read(4096))  # the header, cut inside the metadata
    with pytest.raises(UserError) as raised:
        quantize_gguf(_job(card, source, tmp_path / "out", 8, allow_requantize=True))
    assert "broken.gguf" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_source_cut_in_half_is_refused_before_llama_cpp_runs(
    card: ModelCard, smollm2_gguf: Path, tmp_path: Path
) -> None:
    source = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as handle:
        source.write_bytes(handle.read(smollm2_gguf.stat().st_size // 2))
    output = tmp_path / "out"
    with pytest.raises(UserError, match=r"cut\.gguf is not a readable GGUF file: it is truncated or corrupt"):
        quantize_gguf(_job(card, source, output, 8, allow_requantize=True))
    assert not list(output.glob("*.gguf"))


def test_a_llama_cpp_failure_is_one_line_with_its_reason(card: ModelCard, tmp_path: Path) -> None:
    """A well-formed GGUF of an architecture llama.cpp does not know: its own reason, no output left behind."""
    import gguf
    import numpy as np

    source = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(source), "not-an-architecture")
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    output = tmp_path / "out"
    with pytest.raises(UserError) as raised:
        quantize_gguf(_job(card, source, output, 8))
    assert str(raised.value) == (
        "llama.cpp could not quantize odd.gguf to Q8_0: failed to quantize: unknown model architecture: "
        "'not-an-architecture'"
    )
    assert not list(output.iterdir())


# --- transformers folders, through llama.cpp's own converter ---------------------------------------------


@pytest.fixture(scope="module")
def converter() -> gguf_converter.Converter:
    try:
        return gguf_converter.find_converter(REPO_CACHE, environ={})
    except UserError as exc:
        pytest.skip(f"llama.cpp's converter is not fetched here: {exc}")


@pytest.fixture(scope="module")
def tiny_llama(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (hidden 64, 2 layers, GQA) with SmolLM2's real tokenizer.

    The converter recognises a BPE tokenizer by the hash of its pre-tokenizer's output, so a tokenizer
    trained on the spot is refused; SmolLM2's (read from the bundled GGUF) is one it knows.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("sentencepiece")  # llama.cpp's Llama converter imports it before reading tokenizer.json
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(7)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_transformers_folder_goes_through_llama_cpp_s_converter(
    converter: gguf_converter.Converter,
    tiny_llama: Path,
    card: ModelCard,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from slm_eval.backends.llamacpp import load

    monkeypatch.setenv(gguf_converter.CONVERTER_ENV, str(converter.root))
    output = tmp_path / "out"
    result = quantize_gguf(_job(card, tiny_llama, output, 4, source_format="transformers"))
    assert result.entry == "smollm2-135m-instruct-Q4_K_M.gguf"
    assert not result.requantized
    facts = result.facts
    assert facts["source_file_type"] == "F16"
    assert facts["conversion"]["outtype"] == "f16"
    assert facts["conversion"]["llama_cpp_commit"] == converter.llama_cpp_commit
    # Rows of 64 or 256: the 256-wide ffn_down takes a K-quant; the 64-wide matrices fall back.
    assert "Q4_K" in facts["groups"]["ffn_down.weight"] or "Q6_K" in facts["groups"]["ffn_down.weight"]
    assert "output.weight" in facts["groups"]
    assert not list((tmp_path / "cache").glob("gguf-convert-*"))  # the F16 intermediate is gone
    backend = load(card, output / result.entry, LoadOptions(threads=2, context_length=128, chat=False))
    try:
        [generation] = backend.generate([GenerationRequest(prompt="passport", max_new_tokens=4, ignore_eos=True)])
    finally:
        backend.close()
    assert generation.output_tokens == 4


def test_without_the_converter_the_error_names_the_fetch_command(
    card: ModelCard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError) as raised:
        quantize_gguf(_job(card, folder, tmp_path / "out", 8, source_format="transformers"))
    message = str(raised.value)
    assert "python -m slm_eval.optimize.gguf_converter --cache-dir" in message
    assert "SLM_EVAL_LLAMA_CPP_DIR" in message


def test_a_converter_failure_is_one_line_with_its_reason(tmp_path: Path) -> None:
    root = tmp_path / "llama.cpp"
    root.mkdir()
    (root / "convert_hf_to_gguf.py").write_text(
        "import sys\nprint('INFO: loading', file=sys.stderr)\n"
        "raise NotImplementedError('BPE pre-tokenizer was not recognized - update get_vocab_base_pre()')\n",
        encoding="utf-8",
    )
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    converter = gguf_converter.find_converter(tmp_path, environ={"SLM_EVAL_LLAMA_CPP_DIR": str(root)})
    with pytest.raises(UserError, match="NotImplementedError: BPE pre-tokenizer was not recognized"):
        gguf_converter.convert_to_gguf(converter, folder, tmp_path / "out.gguf")
    (root / "convert_hf_to_gguf.py").write_text("import sentencepiece_missing_x\n", encoding="utf-8")
    with pytest.raises(UserError, match="pip install 'sentencepiece_missing_x'"):
        gguf_converter.convert_to_gguf(converter, folder, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def _sdist(path: Path, version: str, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"llama_cpp_python-{version}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


CHANGELOG = b"""## [Unreleased]

## [9.9.9]

- feat: update llama.cpp to ggml-org/llama.cpp@abc1234

## [9.9.8]

- feat: update llama.cpp to ggml-org/llama.cpp@0000000
"""


@pytest.fixture
def fake_sdist(tmp_path: Path) -> Iterator[Path]:
    yield _sdist(
        tmp_path / "llama_cpp_python-9.9.9.tar.gz",
        "9.9.9",
        {
            "CHANGELOG.md": CHANGELOG,
            "vendor/llama.cpp/convert_hf_to_gguf.py": b"print('converter')\n",
            "vendor/llama.cpp/conversion/__init__.py": b"",
            "vendor/llama.cpp/gguf-py/gguf/__init__.py": b"",
            "vendor/llama.cpp/LICENSE": b"MIT",
            "vendor/llama.cpp/ggml/src/ggml.c": b"int main(void) { return 0; }\n",
            "llama_cpp/__init__.py": b"",
        },
    )


def test_the_converter_is_extracted_from_the_sdist_with_its_provenance(fake_sdist: Path, tmp_path: Path) -> None:
    converter = gguf_converter.extract_converter(fake_sdist, tmp_path / "cache")
    root = tmp_path / "cache" / "llama-cpp-converter" / "llama-cpp-python-9.9.9"
    assert converter.root == root
    assert converter.llama_cpp_commit == "abc1234"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [
        "LICENSE",
        "SOURCE.json",
        "conversion/__init__.py",
        "convert_hf_to_gguf.py",
        "gguf-py/gguf/__init__.py",
    ]
    source = json.loads((root / "SOURCE.json").read_text(encoding="utf-8"))
    assert source["version"] == "9.9.9"
    assert len(source["sdist_sha256"]) == 64


def test_an_sdist_of_another_version_or_unsafe_paths_is_refused(fake_sdist: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"is llama-cpp-python 9\.9\.9, but 0\.3\.36 is installed"):
        gguf_converter.extract_converter(fake_sdist, tmp_path / "cache", expected_version="0.3.36")
    unsafe = _sdist(tmp_path / "llama_cpp_python-1.0.tar.gz", "1.0", {"../../evil.py": b"x"})
    with pytest.raises(UserError, match="unsafe path"):
        gguf_converter.extract_converter(unsafe, tmp_path / "cache")
    assert not (tmp_path / "evil.py").exists()
