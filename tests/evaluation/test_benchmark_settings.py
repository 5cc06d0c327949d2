"""The ``benchmark`` section of the evaluation config: the five use cases by default, bad values rejected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from slm_eval.devices.profiles import load_evaluation_config
from slm_eval.errors import UserError
from slm_eval.evaluation.benchmark_settings import USE_CASE_NAMES, BenchmarkSettings, UseCaseRequirements
from slm_eval.tasks.catalogue import USE_CASES
from tests.fake_runs import packaged_config
from tests.support import REPO_ROOT

REQUIREMENT = {"weight": 0.5, "latency_p90_ms": 1000, "min_score": 0.5}


def test_defaults_hold_the_five_use_cases() -> None:
    settings = BenchmarkSettings()
    assert tuple(settings.use_cases) == USE_CASE_NAMES == tuple(USE_CASES)
    assert sum(r.weight for r in settings.use_cases.values()) == pytest.approx(1.0)
    documents = settings.use_cases["document-verification"]
    assert documents.latency_p90_ms == 2000  # the example: a document check within 2 s at p90
    assert documents.corpus_max == {"false_accept_rate": 0.05}
    assert all(0 < r.min_score <= 1 and r.latency_p90_ms > 0 for r in settings.use_cases.values())
    assert 0 < settings.overall_min_score <= 1


@pytest.mark.parametrize("name", ["passport-check", "Document-Verification", "border-qa"])
def test_an_unknown_use_case_is_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BenchmarkSettings.model_validate({"use_cases": {name: REQUIREMENT}})
    message = str(caught.value)
    assert f"unknown use case '{name}'" in message
    assert ", ".join(USE_CASE_NAMES) in message


@pytest.mark.parametrize("weight", [0, -0.25])
def test_a_non_positive_weight_is_rejected(weight: float) -> None:
    with pytest.raises(ValidationError, match="weight"):
        UseCaseRequirements.model_validate({**REQUIREMENT, "weight": weight})
    with pytest.raises(ValidationError, match="weight"):
        BenchmarkSettings.model_validate({"use_cases": {"customs-help": {**REQUIREMENT, "weight": weight}}})


@pytest.mark.parametrize(
    "bad",
    [{"latency_p90_ms": 0}, {"min_score": 1.5}, {"min_score": -0.1}, {"min_scor": 0.5}],
    ids=["zero-budget", "score-above-one", "negative-score", "typo-field"],
)
def test_other_impossible_requirements_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        UseCaseRequirements.model_validate({**REQUIREMENT, **bad})


def test_an_overall_threshold_above_one_is_rejected() -> None:
    with pytest.raises(ValidationError, match="overall_min_score"):
        BenchmarkSettings(overall_min_score=1.2)


def test_the_config_files_benchmark_section_loads() -> None:
    config = load_evaluation_config(REPO_ROOT / "config" / "evaluation.json")
    benchmark = config.benchmark
    assert tuple(benchmark.use_cases) == USE_CASE_NAMES
    raw = json.loads((REPO_ROOT / "config" / "evaluation.json").read_text(encoding="utf-8"))["benchmark"]
    assert benchmark.overall_min_score == raw["overall_min_score"]
    for name, requirement in raw["use_cases"].items():
        assert benchmark.use_cases[name].weight == requirement["weight"]
        assert benchmark.use_cases[name].latency_p90_ms == requirement["latency_p90_ms"]
        assert benchmark.use_cases[name].min_score == requirement["min_score"]
    assert benchmark == packaged_config().benchmark  # the packaged copy says the same


def test_a_config_file_with_an_unknown_use_case_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"benchmark": {"use_cases": {"passport-check": REQUIREMENT}}}), encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_evaluation_config(path)
    message = str(caught.value)
    assert "unknown use case 'passport-check'" in message and str(path) in message
    assert "\n" not in message


def test_a_config_file_with_a_zero_weight_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.json"
    bad = {"benchmark": {"use_cases": {"customs-help": {**REQUIREMENT, "weight": 0}}}}
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(UserError, match=r"benchmark\.use_cases\.customs-help\.weight must be greater than 0"):
        load_evaluation_config(path)
