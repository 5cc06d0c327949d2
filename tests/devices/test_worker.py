"""The worker's request loop: which requests count as timed, and the top-up to the minimum timed duration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slm_eval.devices import worker


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})


def _answer_taking(seconds: float) -> worker.Answer:
    def answer(item: Mapping[str, Any]) -> dict[str, Any]:
        return {"text": item["prompt"].upper(), "e2e_s": seconds}

    return answer


def test_clean_evaluations_and_timing_requests_are_timed_and_nothing_else() -> None:
    assert worker.is_timed_key("eval|bqa-1|clean")
    assert worker.is_timed_key("timing|bqa-1|0")
    assert worker.is_timed_key("timing|bqa-1|top3")
    assert not worker.is_timed_key("warmup|bqa-1|0")
    assert not worker.is_timed_key("eval|bqa-1|typos")


def test_top_up_repeats_the_pool_until_the_minimum_duration_is_reached() -> None:
    events = RecordingEvents()
    pool = [
        {"key": "eval|a|clean", "prompt": "a", "example_id": "a"},
        {"key": "eval|b|clean", "prompt": "b", "example_id": "b"},
    ]
    worker._top_up(_answer_taking(0.5), {"min_seconds": 2.0, "pool": pool, "max_requests": 100}, 0.4, events)  # type: ignore[arg-type]
    # 0.4 s already timed: four more requests of 0.5 s reach 2.4 s, cycling through the pool
    assert [e["key"] for e in events.events] == ["timing|a|top0", "timing|b|top1", "timing|a|top2", "timing|b|top3"]
    assert [e["text"] for e in events.events] == ["A", "B", "A", "B"]


def test_top_up_stops_at_its_request_cap_and_does_nothing_when_the_run_was_long_enough() -> None:
    pool = [{"key": "eval|a|clean", "prompt": "a", "example_id": "a"}]
    capped = RecordingEvents()
    worker._top_up(_answer_taking(0.0), {"min_seconds": 2.0, "pool": pool, "max_requests": 7}, 0.0, capped)  # type: ignore[arg-type]
    assert len(capped.events) == 7
    enough = RecordingEvents()
    worker._top_up(_answer_taking(0.5), {"min_seconds": 2.0, "pool": pool, "max_requests": 7}, 2.5, enough)  # type: ignore[arg-type]
    assert enough.events == []
