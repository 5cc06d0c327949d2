"""Logging: a rich console handler and a size-rotated file under logs/."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest

from slm_eval.logs import LOGGER_NAME, configure_logging, get_logger
from slm_eval.settings import LoggingSettings


def _handlers() -> list[logging.Handler]:
    return logging.getLogger(LOGGER_NAME).handlers


def test_writes_the_log_file_and_creates_its_folder(tmp_path: Path) -> None:
    log_dir = tmp_path / "deep" / "logs"
    path = configure_logging(LoggingSettings(), log_dir)
    get_logger("tests.logs").info("a message for the file")
    get_logger("tests.logs").debug("too detailed for INFO")
    assert path == log_dir / "slm-eval.log"
    text = path.read_text(encoding="utf-8")
    assert "INFO" in text
    assert "slm_eval.tests.logs: a message for the file" in text
    assert "too detailed" not in text


def test_rotates_at_max_bytes_and_keeps_backup_count_files(tmp_path: Path) -> None:
    configure_logging(LoggingSettings(max_bytes=300, backup_count=2, file_name="rot.log"), tmp_path)
    log = get_logger("rotation")
    for number in range(60):
        log.warning("message number %03d", number)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["rot.log", "rot.log.1", "rot.log.2"]
    for path in tmp_path.iterdir():
        assert path.stat().st_size <= 300
    assert "message number 059" in (tmp_path / "rot.log").read_text(encoding="utf-8")
    assert "message number 000" not in "".join(path.read_text(encoding="utf-8") for path in tmp_path.iterdir())


def test_calling_twice_replaces_the_handlers(tmp_path: Path) -> None:
    configure_logging(LoggingSettings(), tmp_path / "first")
    first = list(_handlers())
    configure_logging(LoggingSettings(), tmp_path / "second")
    second = _handlers()
    assert len(second) == 2
    assert not set(first) & set(second)
    assert sum(isinstance(handler, RotatingFileHandler) for handler in second) == 1
    get_logger("twice").warning("once only")
    assert (tmp_path / "second" / "slm-eval.log").read_text(encoding="utf-8").count("once only") == 1
    assert "once only" not in (tmp_path / "first" / "slm-eval.log").read_text(encoding="utf-8")


def test_console_level_debug_also_lowers_the_file_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = configure_logging(LoggingSettings(level="WARNING"), tmp_path, console_level="DEBUG")
    get_logger("debugging").debug("a debug detail")
    assert "a debug detail" in path.read_text(encoding="utf-8")
    assert "a debug detail" in capsys.readouterr().err


def test_console_goes_to_stderr_at_the_configured_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(level="WARNING"), tmp_path)
    get_logger("console").info("quiet")
    get_logger("console").warning("loud")
    out, err = capsys.readouterr()
    assert out == ""
    assert "loud" in err
    assert "quiet" not in err


def test_unwritable_log_folder_falls_back_to_the_console(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    configure_logging(LoggingSettings(), blocker / "logs")
    assert not any(isinstance(handler, RotatingFileHandler) for handler in _handlers())


def test_get_logger_is_under_the_package_logger() -> None:
    assert get_logger("x").name == "slm_eval.x"
    assert get_logger("slm_eval.cli").name == "slm_eval.cli"
