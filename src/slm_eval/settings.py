"""Global settings: ``config/config.json`` validated by pydantic, with environment overrides.

Constructing a :class:`Settings` does no I/O. :func:`load_settings` is the one place that reads a
file and the environment, and every invalid value becomes a one-line :class:`UserError`.

Environment variables override the file: ``SLM_EVAL_<SECTION>__<KEY>``, for example
``SLM_EVAL_LOGGING__LEVEL=DEBUG`` or ``SLM_EVAL_DEFAULTS__MODEL=gemma-3-270m``.
``SLM_EVAL_CONFIG`` names the config file itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slm_eval.errors import UserError
from slm_eval.json_files import read_json_object

ENV_PREFIX = "SLM_EVAL_"
CONFIG_ENV = "SLM_EVAL_CONFIG"
DEFAULT_CONFIG_PATH = Path("config") / "config.json"
# Variables with the prefix that are not config keys.
# Variables with the prefix that are not config keys: the SageMaker settings' role and bucket, and the
# llama.cpp checkout that quantize --format gguf converts with.
RESERVED_ENV = frozenset(
    {CONFIG_ENV, "SLM_EVAL_DEBUG", "SLM_EVAL_SAGEMAKER_ROLE", "SLM_EVAL_SAGEMAKER_BUCKET", "SLM_EVAL_LLAMA_CPP_DIR"}
)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PathSettings(_Section):
    """Where models, results, logs and caches live; relative paths are relative to the working directory."""

    models: Path = Path("data/models")
    results: Path = Path("results")
    logs: Path = Path("logs")
    cache: Path = Path("data/cache")
    training: Path = Path("data/training")


class LoggingSettings(_Section):
    """Console and rotating log-file settings."""

    level: LogLevel = "INFO"
    file_name: str = Field(default="slm-eval.log", min_length=1)
    max_bytes: int = Field(default=5_000_000, gt=0, description="rotate the log file at this size")
    backup_count: int = Field(default=3, ge=0, description="rotated files kept")


class DefaultSettings(_Section):
    """Defaults for commands when a flag is not given."""

    model: str = Field(default="smollm2-135m-instruct", min_length=1)
    device: str = Field(default="host", min_length=1)
    max_new_tokens: int = Field(default=128, gt=0, le=32768)
    context_length: int = Field(default=2048, ge=128, le=1_048_576)
    threads: int | None = Field(default=None, gt=0, description="None: one per CPU this process may use")
    seed: int = 0


class Settings(_Section):
    """All global settings."""

    paths: PathSettings = PathSettings()
    logging: LoggingSettings = LoggingSettings()
    defaults: DefaultSettings = DefaultSettings()


def load_settings(config_path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read the config file (if any) and apply environment overrides.

    Args:
        config_path: an explicit file (``--config``); ``None`` uses ``$SLM_EVAL_CONFIG`` or
            ``config/config.json`` in the working directory when it exists, else the built-in defaults.
        environ: the environment to read overrides from (``os.environ`` in the CLI).

    Raises:
        UserError: the file is missing, not JSON, or a value is invalid.
    """
    path = config_path or _path_from_env(environ)
    data: dict[str, Any] = {}
    if path is not None:
        data = read_json_object(path, "config file")
    elif DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
        data = read_json_object(path, "config file")
    sources = {key: str(path) for key in _leaf_keys(data)}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        _set_nested(data, keys, value, name)
        sources[".".join(keys)] = name
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise UserError(_describe_validation_error(exc, sources)) from exc


def _path_from_env(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(CONFIG_ENV)
    return Path(value) if value else None


def _set_nested(data: dict[str, Any], keys: list[str], value: str, env_name: str) -> None:
    if len(keys) < 2 or not all(keys):
        raise UserError(
            f"environment variable {env_name} is not a config key: use {ENV_PREFIX}<SECTION>__<KEY>, "
            f"e.g. {ENV_PREFIX}LOGGING__LEVEL"
        )
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise UserError(f"environment variable {env_name} overrides '{key}', which is not a section")
        node = child
    node[keys[-1]] = None if value.lower() in {"", "null", "none"} else value


def _leaf_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.extend(_leaf_keys(value, dotted + ".") if isinstance(value, Mapping) else [dotted])
    return keys


def _describe_validation_error(exc: ValidationError, sources: Mapping[str, str]) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    source = sources.get(key) or next(
        (origin for name, origin in sources.items() if name.startswith(key + ".")), "the config"
    )
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{key}' (from {source}); known sections: paths, logging, defaults"
    given = first.get("input")
    return f"invalid config value {key}={given!r} (from {source}): {first['msg']}"
