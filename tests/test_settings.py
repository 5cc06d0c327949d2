"""Settings: the repository's config file, environment overrides and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from slm_eval.errors import UserError
from slm_eval.settings import Settings, load_settings
from tests.support import REPO_ROOT


@pytest.fixture(autouse=True)
def _in_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_settings(None, ...)`` reads ``config/config.json`` from the working directory: keep it empty."""
    monkeypatch.chdir(tmp_path)


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _error(config: Path | None, environ: dict[str, str]) -> str:
    with pytest.raises(UserError) as info:
        load_settings(config, environ)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_equal_the_repository_config() -> None:
    on_disk = json.loads((REPO_ROOT / "config" / "config.json").read_text(encoding="utf-8"))
    assert Settings().model_dump(mode="json") == on_disk


def test_config_json_in_the_working_directory_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert load_settings(None, {}) == Settings()


def test_no_config_file_gives_the_built_in_defaults() -> None:
    assert load_settings(None, {}) == Settings()


def test_constructing_settings_does_no_io(tmp_path: Path) -> None:
    Settings()
    assert list(tmp_path.iterdir()) == []


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings().defaults.model = "other"


def test_environment_overrides(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.json", {"defaults": {"threads": 4, "max_new_tokens": 32}})
    settings = load_settings(
        config,
        {
            "SLM_EVAL_DEFAULTS__MAX_NEW_TOKENS": "64",
            "SLM_EVAL_DEFAULTS__THREADS": "null",
            "SLM_EVAL_LOGGING__LEVEL": "DEBUG",
            "SLM_EVAL_PATHS__LOGS": str(tmp_path / "elsewhere"),
            "UNRELATED": "x",
        },
    )
    assert settings.defaults.max_new_tokens == 64
    assert settings.defaults.threads is None
    assert settings.logging.level == "DEBUG"
    assert settings.paths.logs == tmp_path / "elsewhere"


def test_reserved_variables_are_not_config_keys() -> None:
    settings = load_settings(None, {"SLM_EVAL_DEBUG": "1", "SLM_EVAL_CONFIG": ""})
    assert settings.logging.level == "INFO"


def test_explicit_path(tmp_path: Path) -> None:
    config = _write(tmp_path / "mine.json", {"defaults": {"model": "gemma-3-270m"}, "logging": {"backup_count": 0}})
    settings = load_settings(config, {})
    assert settings.defaults.model == "gemma-3-270m"
    assert settings.logging.backup_count == 0
    assert settings.defaults.max_new_tokens == Settings().defaults.max_new_tokens


def test_config_from_the_environment(tmp_path: Path) -> None:
    config = _write(tmp_path / "env.json", {"paths": {"results": "out"}})
    assert load_settings(None, {"SLM_EVAL_CONFIG": str(config)}).paths.results == Path("out")


def test_explicit_path_wins_over_the_environment(tmp_path: Path) -> None:
    explicit = _write(tmp_path / "explicit.json", {"defaults": {"seed": 1}})
    from_env = _write(tmp_path / "env.json", {"defaults": {"seed": 2}})
    assert load_settings(explicit, {"SLM_EVAL_CONFIG": str(from_env)}).defaults.seed == 1


def test_missing_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "absent.json", {})
    assert "cannot read config file" in message
    assert "absent.json" in message


def test_missing_file_named_by_the_environment(tmp_path: Path) -> None:
    message = _error(None, {"SLM_EVAL_CONFIG": str(tmp_path / "absent.json")})
    assert "absent.json" in message


def test_not_json(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{\n  "paths": ,\n}', encoding="utf-8")
    message = _error(config, {})
    assert "bad.json is not valid JSON" in message
    assert "line 2" in message


def test_not_an_object(tmp_path: Path) -> None:
    assert "JSON object" in _error(_write(tmp_path / "list.json", [1, 2]), {})


def test_invalid_value_in_the_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.json", {"logging": {"max_bytes": -1}})
    message = _error(config, {})
    assert "logging.max_bytes=-1" in message
    assert "c.json" in message


def test_invalid_value_in_the_environment_names_the_variable() -> None:
    message = _error(None, {"SLM_EVAL_LOGGING__LEVEL": "LOUD"})
    assert "logging.level='LOUD'" in message
    assert "SLM_EVAL_LOGGING__LEVEL" in message


def test_non_integer_from_the_environment() -> None:
    message = _error(None, {"SLM_EVAL_DEFAULTS__MAX_NEW_TOKENS": "many"})
    assert "defaults.max_new_tokens" in message
    assert "SLM_EVAL_DEFAULTS__MAX_NEW_TOKENS" in message


def test_unknown_key_in_the_file(tmp_path: Path) -> None:
    message = _error(_write(tmp_path / "c.json", {"defaults": {"modle": "x"}}), {})
    assert "unknown config key 'defaults.modle'" in message
    assert "c.json" in message


def test_unknown_key_in_the_environment() -> None:
    message = _error(None, {"SLM_EVAL_LOGGING__LOUDNESS": "3"})
    assert "unknown config key 'logging.loudness'" in message
    assert "SLM_EVAL_LOGGING__LOUDNESS" in message


def test_unknown_section_in_the_environment_names_the_variable() -> None:
    message = _error(None, {"SLM_EVAL_FOO__BAR": "1"})
    assert "unknown config key 'foo'" in message
    assert "SLM_EVAL_FOO__BAR" in message


def test_variable_without_a_section() -> None:
    message = _error(None, {"SLM_EVAL_LEVEL": "DEBUG"})
    assert "SLM_EVAL_LEVEL is not a config key" in message
    assert "SLM_EVAL_<SECTION>__<KEY>" in message


def test_variable_overriding_a_value_as_if_it_were_a_section(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.json", {"defaults": {"model": "smollm2"}})
    message = _error(config, {"SLM_EVAL_DEFAULTS__MODEL__NAME": "x"})
    assert "SLM_EVAL_DEFAULTS__MODEL__NAME" in message
    assert "not a section" in message


def test_the_sagemaker_variables_are_not_taken_for_config_keys() -> None:
    from slm_eval.settings import RESERVED_ENV
    from slm_eval.training.sagemaker_config import ENVIRONMENT_OVERRIDES

    assert set(ENVIRONMENT_OVERRIDES) <= RESERVED_ENV


def test_the_llama_cpp_checkout_variable_is_not_taken_for_a_config_key() -> None:
    from slm_eval.optimize.gguf_converter import CONVERTER_ENV
    from slm_eval.settings import RESERVED_ENV

    assert CONVERTER_ENV in RESERVED_ENV
