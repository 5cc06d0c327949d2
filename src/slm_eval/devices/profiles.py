"""Device profiles and evaluation defaults: ``config/evaluation.json`` validated by pydantic.

A :class:`DeviceProfile` describes a target device: its cores, memory, memory bandwidth, peak
compute and power model, with the public source of each figure. ``None`` means "this machine as
it is" (the ``host`` profile). Constructing a model does no I/O; :func:`load_evaluation_config` is
the one place that reads the file, and every problem becomes a one-line :class:`UserError` that
names the profile and the field, e.g.::

    device profile 'raspberry-pi-5': cores must be at least 1 (got 0); fix it in config/evaluation.json
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from slm_eval.errors import UserError
from slm_eval.evaluation.benchmark_settings import BenchmarkSettings
from slm_eval.json_files import read_json_object

DEFAULT_EVALUATION_CONFIG_PATH = Path("config") / "evaluation.json"
PACKAGED_EVALUATION_CONFIG_PATH = Path(__file__).resolve().parent.parent / "data" / "evaluation.json"

KNOWN_METRICS: tuple[str, ...] = (
    "accuracy",
    "latency",
    "memory",
    "model_size",
    "inference_time",
    "power",
    "robustness",
)
KNOWN_PERTURBATIONS: tuple[str, ...] = ("typos", "ocr", "homoglyphs", "casing_whitespace", "dropped_words")
# Keys a profile's ``sources`` may name: its figures, and the power model's fields.
SOURCE_KEYS: tuple[str, ...] = (
    "description",
    "cores",
    "memory_mib",
    "memory_bandwidth_gbs",
    "peak_gflops",
    "power",
    "power.idle_w",
    "power.active_w",
)
PROFILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PowerModel(_Frozen):
    """A device's power draw: at rest and with every core busy, in watts."""

    idle_w: float = Field(ge=0, le=10_000, strict=True, description="whole device at rest")
    active_w: float = Field(gt=0, le=10_000, strict=True, description="whole device with every core busy")

    @model_validator(mode="after")
    def _active_not_below_idle(self) -> PowerModel:
        if self.active_w < self.idle_w:
            raise ValueError(f"active_w must be at least idle_w (got active_w={self.active_w}, idle_w={self.idle_w})")
        return self


class DeviceProfile(_Frozen):
    """A target device; ``None`` for a figure means "this machine as it is"."""

    name: str = Field(pattern=PROFILE_NAME_PATTERN)
    description: str = ""
    cores: int | None = Field(default=None, ge=1, le=4096, strict=True)
    memory_mib: int | None = Field(default=None, ge=64, le=16 * 1024 * 1024, strict=True)
    memory_bandwidth_gbs: float | None = Field(default=None, gt=0, le=100_000, strict=True)
    peak_gflops: float | None = Field(default=None, gt=0, le=10_000_000, strict=True)
    power: PowerModel | None = None
    sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("sources")
    @classmethod
    def _sources_name_fields(cls, sources: dict[str, str]) -> dict[str, str]:
        for key, text in sources.items():
            if key not in SOURCE_KEYS:
                raise ValueError(f"names unknown field '{key}'{_did_you_mean(key, SOURCE_KEYS)}")
            if not text.strip():
                raise ValueError(f"the source of '{key}' is empty; name a datasheet or write 'estimate: <arithmetic>'")
        return sources

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes, or ``None`` for no limit."""
        return None if self.memory_mib is None else self.memory_mib * 1024 * 1024


HOST_PROFILE = DeviceProfile(name="host", description="This machine as it is: no limits.")


class ValidityRules(_Frozen):
    """Rules a timed run must meet to be marked valid (after MLPerf and llama-bench)."""

    warmup_requests: int = Field(default=1, ge=0, le=10_000, strict=True, description="untimed requests first")
    min_requests: int = Field(default=5, ge=1, le=1_000_000, strict=True, description="timed requests at least")
    min_duration_s: float = Field(default=2.0, ge=0, le=86_400, strict=True, description="timed seconds at least")
    max_cv: float = Field(default=0.25, gt=0, le=10, strict=True, description="coefficient of variation at most")


class RobustnessSettings(_Frozen):
    """Which seeded perturbations re-score the task, and at what rate."""

    rate: float = Field(default=0.1, gt=0, le=1, strict=True, description="share of characters or words perturbed")
    perturbations: tuple[str, ...] = KNOWN_PERTURBATIONS

    @field_validator("perturbations")
    @classmethod
    def _known_perturbations(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return _check_names(names, KNOWN_PERTURBATIONS, "perturbation")


class BootstrapSettings(_Frozen):
    """Bootstrap confidence intervals for task scores."""

    confidence: float = Field(default=0.95, gt=0, lt=1, strict=True)
    resamples: int = Field(default=1000, ge=10, le=1_000_000, strict=True)


class EvaluationConfig(_Frozen):
    """Everything in ``config/evaluation.json``: device profiles and evaluation defaults."""

    profiles: dict[str, DeviceProfile] = Field(default_factory=lambda: {"host": HOST_PROFILE}, min_length=1)
    validity: ValidityRules = ValidityRules()
    robustness: RobustnessSettings = RobustnessSettings()
    bootstrap: BootstrapSettings = BootstrapSettings()
    metrics: tuple[str, ...] = KNOWN_METRICS
    benchmark: BenchmarkSettings = BenchmarkSettings()

    @model_validator(mode="before")
    @classmethod
    def _name_profiles_by_key(cls, data: Any) -> Any:
        """Give each profile its key as ``name``; a ``name`` that differs from the key is an error."""
        if not isinstance(data, Mapping) or not isinstance(data.get("profiles"), Mapping):
            return data
        profiles: dict[str, Any] = {}
        for key, profile in data["profiles"].items():
            if isinstance(profile, Mapping):
                named = profile.get("name", key)
                if named != key:
                    raise ValueError(
                        f"device profile '{key}': name {named!r} differs from its key; remove the name field"
                    )
                profile = {**profile, "name": key}
            profiles[key] = profile
        return {**data, "profiles": profiles}

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return _check_names(names, KNOWN_METRICS, "metric")


def default_evaluation_config_path() -> Path:
    """``config/evaluation.json`` in the working directory when it exists, else the copy shipped with the package."""
    if DEFAULT_EVALUATION_CONFIG_PATH.is_file():
        return DEFAULT_EVALUATION_CONFIG_PATH
    return PACKAGED_EVALUATION_CONFIG_PATH


def load_evaluation_config(path: Path) -> EvaluationConfig:
    """Read and validate an evaluation config file.

    Args:
        path: the JSON file, e.g. ``default_evaluation_config_path()``.

    Raises:
        UserError: the file is missing or not JSON, or a value is impossible; the one-line message
            names the profile (or section) and the field.
    """
    data = read_json_object(path, "evaluation config")
    try:
        return EvaluationConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc.errors()[0], path)) from exc


def get_profile(config: EvaluationConfig, name: str) -> DeviceProfile:
    """The profile called ``name``.

    Raises:
        UserError: no such profile; the message suggests the closest name and lists the known ones.
    """
    try:
        return config.profiles[name]
    except KeyError:
        known = sorted(config.profiles)
        raise UserError(
            f"unknown device profile '{name}'{_did_you_mean(name, known)}; known profiles: {', '.join(known)}"
        ) from None


def describe_validation_error(error: ErrorDetails, path: Path) -> str:
    """One line for one pydantic error: which profile or section, which field, what is wrong, where to fix it."""
    loc = [str(part) for part in error["loc"]]
    if not loc:
        return f"{_problem(error, '')}; fix it in {path}"
    if loc[0] == "profiles" and len(loc) >= 2:
        subject, field = f"device profile '{loc[1]}'", ".".join(loc[2:])
    else:
        subject, field = "evaluation config", ".".join(loc)
    return f"{subject}: {_problem(error, field)}; fix it in {path}"


def _problem(error: ErrorDetails, field: str) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    given = error.get("input")
    got = f" (got {given!r})"
    what = field or "the value"
    bounds = {
        "greater_than_equal": ("must be at least", "ge"),
        "greater_than": ("must be greater than", "gt"),
        "less_than_equal": ("must be at most", "le"),
        "less_than": ("must be less than", "lt"),
    }
    if kind in bounds:
        phrase, key = bounds[kind]
        return f"{what} {phrase} {ctx.get(key)}{got}"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"{what} must be a whole number{got}"
    if kind in {"float_type", "float_parsing", "finite_number"}:
        return f"{what} must be a number{got}"
    if kind == "missing":
        return f"{what} is missing"
    if kind == "extra_forbidden":
        return f"unknown field '{field}'{_did_you_mean(field.rsplit('.', 1)[-1], _FIELD_NAMES)}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return f"{field or 'the profile'} must be a JSON object"
    if kind == "too_short" and field == "profiles":
        return "profiles must name at least one device"
    if kind == "string_pattern_mismatch":
        return f"{what} must be letters, digits, '.', '_' or '-', starting with a letter or digit{got}"
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return f"{field}: {message}" if field else message
    return f"{what}: {error['msg']}{got}"


def _check_names(names: tuple[str, ...], known: tuple[str, ...], kind: str) -> tuple[str, ...]:
    if not names:
        raise ValueError(f"name at least one {kind} (known: {', '.join(known)})")
    for name in names:
        if name not in known:
            raise ValueError(f"unknown {kind} '{name}'{_did_you_mean(name, known)} (known: {', '.join(known)})")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{kind} '{duplicates[0]}' is listed twice")
    return names


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


_MODELS = (PowerModel, DeviceProfile, ValidityRules, RobustnessSettings, BootstrapSettings, EvaluationConfig)
_FIELD_NAMES: tuple[str, ...] = tuple(sorted({name for model in _MODELS for name in model.model_fields}))
