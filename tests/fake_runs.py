"""Evaluation runs shared by the evaluation, results and CLI tests: requests, configs, datasets, runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from slm_eval.devices.profiles import PACKAGED_EVALUATION_CONFIG_PATH, EvaluationConfig, load_evaluation_config
from slm_eval.evaluation.evaluate import EvaluateOutcome, EvaluateRequest, execute, plan_run
from slm_eval.results.records import RunPaths

MODEL = "smollm2-135m-instruct"
MIB = 1024 * 1024


def packaged_config() -> EvaluationConfig:
    """The evaluation config shipped with the package (the same figures as ``config/evaluation.json``)."""
    return load_evaluation_config(PACKAGED_EVALUATION_CONFIG_PATH)


def config_with_profile(name: str, **profile: Any) -> EvaluationConfig:
    """The packaged config plus one extra device profile."""
    data = packaged_config().model_dump(mode="json")
    data["profiles"][name] = profile
    return EvaluationConfig.model_validate(data)


def fake_request(**overrides: Any) -> EvaluateRequest:
    """A request for the fake backend on docker-sim, four examples, every metric."""
    request = EvaluateRequest(
        model=MODEL,
        device="docker-sim",
        metrics=None,
        dataset=None,
        limit=4,
        seed=0,
        max_new_tokens=16,
        threads=None,
        context_length=2048,
        backend="fake",
    )
    return replace(request, **overrides)


def run_fake(
    results_dir: Path,
    *,
    config: EvaluationConfig | None = None,
    write_report: bool = False,
    **overrides: Any,
) -> EvaluateOutcome:
    """Plan and execute a run (fake backend unless overridden) without measuring the host."""
    settings, card = plan_run(fake_request(**overrides), config or packaged_config())
    paths = RunPaths(results_dir / settings.run_id)
    return execute(settings, card, paths, results_dir / "cache", measure_host=False, write_report=write_report)


def records_of(paths: RunPaths) -> list[dict[str, Any]]:
    """Every line of ``records.jsonl`` parsed (a test wants to see a broken line fail, so no skipping)."""
    return [json.loads(line) for line in paths.records.read_text(encoding="utf-8").splitlines()]


def write_qa_jsonl(path: Path, count: int) -> Path:
    """A SQuAD-format JSONL file of ``count`` short questions whose answers are spans of their contexts."""
    lines = []
    for index in range(count):
        answer = f"{index % 24} hours"
        context = f"Gate {index} of the border post opens at {answer} for travellers with passports."
        record = {
            "id": f"q{index:05d}",
            "question": f"When does gate {index} open?",
            "context": context,
            "answers": {"text": [answer], "answer_start": [context.index(answer)]},
        }
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
