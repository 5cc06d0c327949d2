"""The local launcher's bookkeeping: the base model's score is reused only for the same examples."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from slm_eval.models.catalogue import default_registry
from slm_eval.training import local
from slm_eval.training.plan import TrainRequest, plan_training
from slm_eval.training.run_folder import run_folder


def test_the_before_score_is_kept_for_the_same_limit_and_redone_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int | None] = []

    def fake_score(plan: Any, location: Path, dataset: Any, report: Any) -> dict[str, Any]:
        calls.append(plan.request.score_limit)
        return {"mean": 0.25, "sets": []}

    monkeypatch.setattr(local, "score_on_validation", fake_score)
    card = default_registry().resolve("minilm")
    plan = plan_training(TrainRequest(model=card.name, score_limit=10), card, seed=0)
    dataset = SimpleNamespace(validation_sets=("one set",))
    run = run_folder(tmp_path, card.name, "ab" * 32)
    lines: list[str] = []
    first = local._before_score(plan, tmp_path, dataset, run, lines.append)
    again = local._before_score(plan, tmp_path, dataset, run, lines.append)
    assert first == again == {"mean": 0.25, "sets": [], "limit": 10}
    assert calls == [10]
    assert "kept from this run's first start" in lines[-1]
    wider = replace(plan, request=replace(plan.request, score_limit=40))
    local._before_score(wider, tmp_path, dataset, run, lines.append)
    assert calls == [10, 40]
    assert (
        local._before_score(
            replace(plan, request=replace(plan.request, score_limit=0)), tmp_path, dataset, run, lines.append
        )
        is None
    )
