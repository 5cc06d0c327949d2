#!/usr/bin/env python3
"""Throughput of the evaluation runner itself: the fake backend at zero latency, records included.

The runner plans the requests, starts the sandboxed worker, streams every result back, scores it and
appends a flushed record to ``records.jsonl`` — everything a real run does except the model. The figure
is examples per second over the whole session (worker start-up included) and over the streaming part
alone (first to last record).

Target: >= 5,000 examples/s for the whole session.

Example:
    .venv/bin/python benchmarks/harness_overhead.py --examples 20000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from slm_eval.devices.profiles import HOST_PROFILE, ValidityRules
from slm_eval.evaluation.plan import RunSettings
from slm_eval.evaluation.runner import RunContext, run_session
from slm_eval.models.catalogue import default_registry
from slm_eval.results.records import RunPaths, read_records
from slm_eval.tasks.base import Example
from slm_eval.tasks.squad import SquadTask

TARGET_EXAMPLES_PER_S = 5000.0


def synthetic_examples(count: int) -> list[Example]:
    """Short QA examples whose answer is a span of their context."""
    return [
        Example(
            id=f"syn-{index:06d}",
            question=f"Which gate does flight {index} leave from?",
            context=f"Flight {index} to Lisbon leaves from gate B{index % 40} at 14:05.",
            references=(f"B{index % 40}",),
        )
        for index in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()

    examples = synthetic_examples(args.examples)
    task = SquadTask("synthetic-qa", examples)
    card = default_registry().resolve("smollm2-135m-instruct")
    with tempfile.TemporaryDirectory() as folder:
        settings = RunSettings(
            run_id="harness-overhead",
            model=card.name,
            backend="fake",
            dataset=None,
            task=task.name,
            limit=None,
            seed=0,
            metrics=("accuracy", "latency"),
            device=HOST_PROFILE,
            max_new_tokens=16,
            threads=None,
            context_length=2048,
            validity=ValidityRules(warmup_requests=0, min_requests=1, min_duration_s=0.0, max_cv=10.0),
            robustness_rate=0.1,
            perturbations=(),
        )
        paths = RunPaths(Path(folder) / settings.run_id)
        first_record: list[float] = []

        def on_progress(done: int, total: int) -> None:
            if done == 1:
                first_record.append(time.perf_counter())

        started = time.perf_counter()
        run_session(
            settings, card, task, examples, RunContext(paths=paths, cache_dir=Path(folder), on_progress=on_progress)
        )
        finished = time.perf_counter()
        records = sum(1 for record in read_records(paths.records) if record["kind"] == "eval")
    whole = records / (finished - started)
    streaming = (records - 1) / (finished - first_record[0]) if first_record else None
    print(
        json.dumps(
            {
                "benchmark": "harness_overhead",
                "label": "measured",
                "unit": "examples/s",
                "examples": records,
                "session_s": round(finished - started, 3),
                "examples_per_s": round(whole, 1),
                "streaming_examples_per_s": None if streaming is None else round(streaming, 1),
                "target": {"examples_per_s_min": TARGET_EXAMPLES_PER_S},
                "pass": whole >= TARGET_EXAMPLES_PER_S and records == args.examples,
            }
        )
    )


if __name__ == "__main__":
    main()
