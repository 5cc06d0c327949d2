"""Device profiles and evaluation defaults: the shipped file, validation and name look-up."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slm_eval.devices.profiles import (
    KNOWN_METRICS,
    PACKAGED_EVALUATION_CONFIG_PATH,
    EvaluationConfig,
    PowerModel,
    default_evaluation_config_path,
    get_profile,
    load_evaluation_config,
)
from slm_eval.errors import UserError

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "evaluation.json"
PROFILES = ("host", "docker-sim", "raspberry-pi-5", "jetson-orin-nano", "android-phone", "rugged-tablet")
FIGURES = ("cores", "memory_mib", "memory_bandwidth_gbs", "peak_gflops")


@pytest.fixture(scope="module")
def config() -> EvaluationConfig:
    return load_evaluation_config(CONFIG)


def _raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CONFIG.read_text(encoding="utf-8"))
    return data


def _load_changed(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    data = copy.deepcopy(_raw())
    change(data)
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_evaluation_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_the_six_profiles_exist_with_every_field(config: EvaluationConfig) -> None:
    assert set(PROFILES) <= set(config.profiles)
    for name in PROFILES:
        profile = config.profiles[name]
        assert profile.name == name
        assert profile.description
    for name in PROFILES[1:]:
        profile = config.profiles[name]
        assert all(getattr(profile, field) is not None for field in FIGURES), name
        assert profile.power is not None, name
        assert profile.power.active_w > profile.power.idle_w > 0


def test_host_has_no_limits(config: EvaluationConfig) -> None:
    host = config.profiles["host"]
    assert all(getattr(host, field) is None for field in FIGURES)
    assert host.power is None
    assert host.memory_bytes is None


def test_docker_sim_is_a_small_edge_box(config: EvaluationConfig) -> None:
    sim = config.profiles["docker-sim"]
    assert sim.cores == 2
    assert sim.memory_mib == 2048
    assert sim.memory_bytes == 2 * 1024**3


def test_every_figure_has_a_source_and_estimates_say_so(config: EvaluationConfig) -> None:
    for name in PROFILES:
        profile = config.profiles[name]
        for field in FIGURES:
            assert profile.sources.get(field), f"{name}.{field} has no source"
        if profile.power is not None:
            assert profile.sources.get("power.idle_w") and profile.sources.get("power.active_w"), name
    # A derived peak shows its arithmetic.
    for name in PROFILES[1:]:
        assert config.profiles[name].sources["peak_gflops"].startswith("estimate:"), name
        assert " x " in config.profiles[name].sources["peak_gflops"], name


def test_peak_arithmetic_matches_the_figures(config: EvaluationConfig) -> None:
    assert config.profiles["raspberry-pi-5"].peak_gflops == pytest.approx(4 * 2.4 * 16)
    assert config.profiles["jetson-orin-nano"].peak_gflops == pytest.approx(6 * 1.5 * 16)
    assert config.profiles["rugged-tablet"].peak_gflops == pytest.approx(4 * 3.2 * 16)
    assert config.profiles["android-phone"].peak_gflops == pytest.approx(2.91 * 32 + 3 * 2.49 * 16 + 4 * 1.8 * 8, 0.01)
    assert config.profiles["raspberry-pi-5"].memory_bandwidth_gbs == pytest.approx(4267 * 4 / 1000, 0.01)


def test_evaluation_defaults(config: EvaluationConfig) -> None:
    assert config.validity.warmup_requests == 1
    assert config.validity.min_requests == 5
    assert config.validity.min_duration_s == 2.0
    assert config.validity.max_cv == 0.25
    assert config.robustness.rate == 0.1
    assert config.robustness.perturbations == ("typos", "ocr", "homoglyphs", "casing_whitespace", "dropped_words")
    assert config.bootstrap.confidence == 0.95
    assert config.bootstrap.resamples == 1000
    assert config.metrics == KNOWN_METRICS


def test_built_in_defaults_need_no_file() -> None:
    config = EvaluationConfig()
    assert list(config.profiles) == ["host"]
    assert config.validity.min_requests == 5


def test_packaged_copy_is_identical() -> None:
    assert PACKAGED_EVALUATION_CONFIG_PATH.read_bytes() == CONFIG.read_bytes()


def test_default_path_prefers_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_evaluation_config_path() == PACKAGED_EVALUATION_CONFIG_PATH
    assert load_evaluation_config(default_evaluation_config_path()).profiles["raspberry-pi-5"].cores == 4
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "evaluation.json").write_text(CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    assert default_evaluation_config_path() == Path("config/evaluation.json")


def test_models_are_frozen(config: EvaluationConfig) -> None:
    with pytest.raises(Exception, match="frozen"):
        config.profiles["docker-sim"].cores = 8


def _set(profile: str, field: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data["profiles"][profile]
        *parents, leaf = field.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value

    return change


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("cores", 0, "cores must be at least 1 (got 0)"),
        ("cores", 2.5, "cores must be a whole number (got 2.5)"),
        ("cores", True, "cores must be a whole number (got True)"),
        ("memory_mib", 16, "memory_mib must be at least 64 (got 16)"),
        ("memory_mib", 8 * 1024**3, "memory_mib must be at most"),
        ("memory_bandwidth_gbs", 0, "memory_bandwidth_gbs must be greater than 0"),
        ("memory_bandwidth_gbs", -17.1, "memory_bandwidth_gbs must be greater than 0"),
        ("peak_gflops", 0, "peak_gflops must be greater than 0"),
        ("peak_gflops", "fast", "peak_gflops must be a number (got 'fast')"),
        ("power.idle_w", -1, "power.idle_w must be at least 0"),
        ("power.active_w", 0, "power.active_w must be greater than 0"),
        ("power.active_w", 1.0, "power: active_w must be at least idle_w (got active_w=1.0, idle_w=2.7)"),
        ("power.volts", 5, "unknown field 'power.volts'"),
        ("corse", 4, "unknown field 'corse' (did you mean 'cores'?)"),
        ("sources.corse", "x", "sources: names unknown field 'corse' (did you mean 'cores'?)"),
    ],
)
def test_impossible_values_are_one_line_errors_naming_profile_and_field(
    tmp_path: Path, field: str, value: object, expected: str
) -> None:
    message = _load_changed(tmp_path, _set("raspberry-pi-5", field, value))
    assert message.startswith(f"device profile 'raspberry-pi-5': {expected}"), message


def test_missing_power_field(tmp_path: Path) -> None:
    message = _load_changed(tmp_path, _set("jetson-orin-nano", "power", {"idle_w": 5.0}))
    assert message.startswith("device profile 'jetson-orin-nano': power.active_w is missing"), message


def test_profile_name_must_match_its_key(tmp_path: Path) -> None:
    message = _load_changed(tmp_path, _set("docker-sim", "name", "edge"))
    assert message.startswith("device profile 'docker-sim': name 'edge' differs from its key"), message


def test_profile_must_be_an_object_with_a_usable_name(tmp_path: Path) -> None:
    message = _load_changed(tmp_path, lambda data: data["profiles"].update({"pi": 4}))
    assert message.startswith("device profile 'pi': the profile must be a JSON object"), message
    message = _load_changed(tmp_path, lambda data: data["profiles"].update({"my pi": {}}))
    assert message.startswith("device profile 'my pi': name must be letters"), message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(profiles={}), "evaluation config: profiles must name at least one device"),
        (lambda d: d["validity"].update(min_requests=0), "evaluation config: validity.min_requests must be at least 1"),
        (lambda d: d["validity"].update(max_cv=0), "evaluation config: validity.max_cv must be greater than 0"),
        (lambda d: d["bootstrap"].update(confidence=1.5), "evaluation config: bootstrap.confidence must be less than"),
        (lambda d: d["robustness"].update(rate=2), "evaluation config: robustness.rate must be at most 1"),
        (
            lambda d: d["robustness"].update(perturbations=["typo"]),
            "evaluation config: robustness.perturbations: unknown perturbation 'typo' (did you mean 'typos'?)",
        ),
        (
            lambda d: d.update(metrics=["acuracy"]),
            "evaluation config: metrics: unknown metric 'acuracy' (did you mean 'accuracy'?)",
        ),
        (lambda d: d.update(metrics=["power", "power"]), "evaluation config: metrics: metric 'power' is listed twice"),
        (lambda d: d.update(metrics=[]), "evaluation config: metrics: name at least one metric"),
        (lambda d: d.update(devices={}), "evaluation config: unknown field 'devices'"),
    ],
)
def test_invalid_defaults_are_one_line_errors(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    message = _load_changed(tmp_path, change)
    assert message.startswith(expected), message


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read evaluation config"):
        load_evaluation_config(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"profiles": ', encoding="utf-8")
    with pytest.raises(UserError, match="is not valid JSON"):
        load_evaluation_config(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[]", encoding="utf-8")
    with pytest.raises(UserError, match="JSON object at the top level"):
        load_evaluation_config(listed)


def test_non_finite_values_are_rejected(tmp_path: Path) -> None:
    message = _load_changed(tmp_path, _set("raspberry-pi-5", "peak_gflops", float("nan")))
    assert message.startswith("device profile 'raspberry-pi-5': peak_gflops must be a number"), message


def test_get_profile(config: EvaluationConfig) -> None:
    assert get_profile(config, "raspberry-pi-5").cores == 4


def test_unknown_profile_suggests_the_closest_name(config: EvaluationConfig) -> None:
    with pytest.raises(UserError) as caught:
        get_profile(config, "raspbery-pi5")
    message = str(caught.value)
    assert message.startswith("unknown device profile 'raspbery-pi5' (did you mean 'raspberry-pi-5'?)")
    assert "known profiles: android-phone, docker-sim, host" in message
    with pytest.raises(UserError) as caught:
        get_profile(config, "mainframe")
    assert "did you mean" not in str(caught.value)


def test_power_model_rejects_active_below_idle() -> None:
    with pytest.raises(ValueError, match="active_w must be at least idle_w"):
        PowerModel(idle_w=5.0, active_w=4.0)
    assert PowerModel(idle_w=0.0, active_w=4.0).idle_w == 0.0
