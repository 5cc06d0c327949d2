"""Fixtures shared by the API backend's tests: llama-cpp-python's real server, and the backend loaded on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_eval.backends import openai_api
from slm_eval.backends.base import LoadOptions
from slm_eval.backends.openai_api import OpenAIAPIBackend
from slm_eval.models.catalogue import default_registry
from tests.backends.api_servers import llama_cpp_server


@pytest.fixture(scope="module")
def server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with the bundled SmolLM2, for the whole module."""
    with llama_cpp_server(smollm2_gguf, tmp_path_factory.mktemp("server") / "server.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def real(server: str) -> Iterator[OpenAIAPIBackend]:
    """The backend on the real server, loaded as the CLI loads it (its model discovered, the network probed)."""
    backend = openai_api.load(default_registry().resolve(server), None, LoadOptions(), environ={})
    yield backend
    backend.close()
