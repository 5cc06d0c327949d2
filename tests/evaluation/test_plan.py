"""Planning a run: which metrics, the settings kept in run.json, and the list of requests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from slm_eval.devices.profiles import KNOWN_METRICS, DeviceProfile, PowerModel, ValidityRules
from slm_eval.errors import UserError
from slm_eval.evaluation.evaluate import plan_run
from slm_eval.evaluation.plan import CLEAN, RunSettings, build_requests, request_key, select_metrics
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard
from slm_eval.results.records import read_json, write_json
from slm_eval.tasks.base import Example
from slm_eval.tasks.squad import SquadTask
from tests.fake_runs import config_with_profile, fake_request, packaged_config

CONFIGURED = ("accuracy", "latency", "memory", "power")


@pytest.fixture(scope="module")
def smollm2() -> ModelCard:
    return default_registry().resolve("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def grok() -> ModelCard:
    return default_registry().resolve("grok-3-mini-fast")


# --- select_metrics ----------------------------------------------------------------------------------


def test_default_metrics_are_the_configured_ones_in_canonical_order(smollm2: ModelCard) -> None:
    assert select_metrics(None, smollm2, ("power", "accuracy", "memory")) == ("accuracy", "memory", "power")
    assert select_metrics([], smollm2, KNOWN_METRICS) == KNOWN_METRICS


def test_default_metrics_of_an_api_model_drop_memory_and_power(grok: ModelCard) -> None:
    assert grok.kind == "api"
    assert select_metrics(None, grok, KNOWN_METRICS) == (
        "accuracy",
        "latency",
        "model_size",
        "inference_time",
        "robustness",
    )


@pytest.mark.parametrize(
    "requested",
    [
        ["accuracy,latency"],
        ["accuracy", "latency"],
        ["latency", "accuracy"],
        [" Accuracy , LATENCY ,"],
        ["accuracy", "accuracy,latency"],
    ],
)
def test_requested_metrics_space_or_comma_separated(smollm2: ModelCard, requested: list[str]) -> None:
    assert select_metrics(requested, smollm2, CONFIGURED) == ("accuracy", "latency")


def test_requested_metrics_need_not_be_configured(smollm2: ModelCard) -> None:
    assert select_metrics(["model_size"], smollm2, ("accuracy",)) == ("model_size",)


@pytest.mark.parametrize("requested", [["accuracy", "speed"], ["accuracy,speed,latency"]])
def test_an_unknown_metric_is_named(smollm2: ModelCard, requested: list[str]) -> None:
    with pytest.raises(UserError) as caught:
        select_metrics(requested, smollm2, CONFIGURED)
    message = str(caught.value)
    assert "unknown metric 'speed'" in message
    assert "model_size" in message  # the choices are listed


@pytest.mark.parametrize("metric", ["memory", "power"])
def test_memory_and_power_are_rejected_for_an_api_model(grok: ModelCard, metric: str) -> None:
    with pytest.raises(UserError) as caught:
        select_metrics(["accuracy", metric], grok, CONFIGURED)
    assert f"{metric} is not applicable to grok-3-mini-fast" in str(caught.value)
    assert "remote API" in str(caught.value)


# --- RunSettings -------------------------------------------------------------------------------------


def _settings(**overrides: object) -> RunSettings:
    profile = DeviceProfile(
        name="edge-box",
        description="a test box",
        cores=2,
        memory_mib=1024,
        memory_bandwidth_gbs=12.5,
        peak_gflops=64.0,
        power=PowerModel(idle_w=2.0, active_w=7.5),
        sources={"cores": "estimate: test"},
    )
    settings = RunSettings(
        run_id="20260101-000000-m-abcd",
        model="smollm2-135m-instruct",
        backend="fake",
        dataset="/data/qa.jsonl",
        task="qa",
        limit=7,
        seed=3,
        metrics=("accuracy", "latency", "robustness"),
        device=profile,
        max_new_tokens=16,
        threads=None,
        context_length=1024,
        validity=ValidityRules(warmup_requests=2, min_requests=4, min_duration_s=0.5, max_cv=0.4),
        robustness_rate=0.2,
        perturbations=("typos", "ocr"),
        bootstrap_confidence=0.9,
        bootstrap_resamples=200,
        extra={"note": "x"},
    )
    return replace(settings, **overrides)  # type: ignore[arg-type]


def test_settings_round_trip_through_run_json(tmp_path: Path) -> None:
    settings = _settings()
    path = tmp_path / "run.json"
    write_json(path, settings.to_dict())
    again = RunSettings.from_dict(read_json(path))
    assert again == settings
    assert isinstance(again.device, DeviceProfile) and again.device.power == PowerModel(idle_w=2.0, active_w=7.5)
    assert isinstance(again.validity, ValidityRules) and again.validity.min_requests == 4
    assert again.metrics == ("accuracy", "latency", "robustness")
    assert again.perturbations == ("typos", "ocr")


def test_settings_dict_is_plain_json() -> None:
    data = _settings(device=DeviceProfile(name="host")).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["device"]["cores"] is None and data["device"]["power"] is None
    assert data["validity"] == {"warmup_requests": 2, "min_requests": 4, "min_duration_s": 0.5, "max_cv": 0.4}
    assert RunSettings.from_dict(data).device == DeviceProfile(name="host")


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("device"),
        lambda d: d.update(unexpected=1),
        lambda d: d["device"].update(cores=0),
        lambda d: d.pop("model"),
    ],
    ids=["missing-device", "unknown-key", "impossible-profile", "missing-model"],
)
def test_a_damaged_run_json_is_a_user_error(damage: object) -> None:
    data = _settings().to_dict()
    damage(data)  # type: ignore[operator]
    with pytest.raises(UserError, match=r"run\.json cannot be read back"):
        RunSettings.from_dict(data)


def test_plan_run_takes_rules_and_robustness_from_the_config() -> None:
    config = config_with_profile("tiny", cores=1, memory_mib=512)
    settings, card = plan_run(fake_request(device="tiny", metrics=["accuracy"], limit=3, seed=9), config)
    assert card.name == "smollm2-135m-instruct"
    assert settings.device.name == "tiny" and settings.device.memory_mib == 512
    assert settings.metrics == ("accuracy",)
    assert settings.validity == config.validity
    assert settings.robustness_rate == config.robustness.rate
    assert settings.perturbations == config.robustness.perturbations
    assert settings.task == "border-qa"
    assert settings.run_id.split("-", 2)[2].startswith("smollm2-135m-instruct-")
    assert plan_run(fake_request(robustness_rate=0.3), packaged_config())[0].robustness_rate == 0.3


def test_a_robustness_rate_of_zero_is_honoured_or_rejected() -> None:
    try:
        settings, _ = plan_run(fake_request(robustness_rate=0.0), packaged_config())
    except UserError:
        return
    assert settings.robustness_rate == 0.0


# --- build_requests ----------------------------------------------------------------------------------


def _task(count: int) -> tuple[SquadTask, list[Example]]:
    examples = [
        Example(id=f"e{i}", question=f"Question {i}?", references=(f"answer {i}",), context=f"Context {i}, answer {i}.")
        for i in range(count)
    ]
    return SquadTask("qa", examples), examples


def _perturbed(examples: list[Example], *names: str) -> dict[str, list[Example]]:
    return {name: [replace(ex, question=f"{name}: {ex.question}") for ex in examples] for name in names}


def test_warm_up_first_then_clean_then_perturbed() -> None:
    task, examples = _task(6)
    settings = _settings()  # 2 warm-ups, at least 4 timed requests
    requests = build_requests(settings, task, examples, (), _perturbed(examples, "typos", "ocr"))
    kinds = [(r.kind, r.perturbation) for r in requests]
    assert kinds == [("warmup", CLEAN)] * 2 + [("eval", CLEAN)] * 6 + [("eval", "typos")] * 6 + [("eval", "ocr")] * 6
    assert [r.key for r in requests[:3]] == ["warmup|e0|0", "warmup|e1|1", "eval|e0|clean"]
    assert requests[0].prompt == task.prompt(examples[0])
    assert requests[-1].key == "eval|e5|ocr"
    assert requests[-1].prompt == task.prompt(replace(examples[5], question="ocr: Question 5?"))
    assert len({r.key for r in requests}) == len(requests)


def test_finished_outputs_are_not_asked_for_again() -> None:
    task, examples = _task(6)
    perturbed = _perturbed(examples, "typos")
    finished = {request_key("eval", f"e{i}", CLEAN) for i in range(3)} | {"eval|e0|typos", "eval|e5|typos"}
    requests = build_requests(_settings(), task, examples, finished, perturbed)
    keys = [r.key for r in requests if r.kind == "eval"]
    assert keys == [*(f"eval|e{i}|clean" for i in range(3, 6)), *(f"eval|e{i}|typos" for i in range(1, 5))]
    assert not finished & set(keys)


def test_timing_top_ups_when_fewer_clean_requests_than_the_minimum() -> None:
    task, examples = _task(6)
    finished = {request_key("eval", f"e{i}", CLEAN) for i in range(5)}  # one clean left, minimum 4
    requests = build_requests(_settings(), task, examples, finished, _perturbed(examples, "typos"))
    kinds = [r.kind for r in requests]
    assert kinds == ["warmup", "warmup", "eval", "timing", "timing", "timing"] + ["eval"] * 6
    timing = [r for r in requests if r.kind == "timing"]
    assert [r.key for r in timing] == ["timing|e0|0", "timing|e1|1", "timing|e2|2"]
    assert all(r.perturbation == CLEAN and r.prompt == task.prompt(examples[int(r.example_id[1:])]) for r in timing)
    # Timing top-ups come before the perturbed requests.
    assert kinds.index("timing") < [r.perturbation for r in requests].index("typos")


def test_a_resumed_run_with_every_output_finished_still_times_requests() -> None:
    task, examples = _task(2)
    finished = {request_key("eval", ex.id, CLEAN) for ex in examples}
    requests = build_requests(_settings(), task, examples, finished, {})
    assert [r.key for r in requests] == ["warmup|e0|0", "warmup|e1|1", *(f"timing|e{i % 2}|{i}" for i in range(4))]


def test_no_timing_top_ups_without_latency_and_enough_clean_requests() -> None:
    task, examples = _task(2)
    without_latency = _settings(metrics=("accuracy",))
    assert [r.kind for r in build_requests(without_latency, task, examples, (), {})] == [
        "warmup",
        "warmup",
        "eval",
        "eval",
    ]
    task, examples = _task(5)
    assert "timing" not in {r.kind for r in build_requests(_settings(), task, examples, (), {})}


def test_no_warm_up_when_the_rules_ask_for_none() -> None:
    task, examples = _task(5)
    settings = _settings(validity=ValidityRules(warmup_requests=0, min_requests=1))
    assert [r.kind for r in build_requests(settings, task, examples, (), {})] == ["eval"] * 5
