#!/usr/bin/env python3
"""Training throughput of the engine's Trainer path against a bare PyTorch loop on the same model and batches:
LoRA on SmolLM2-135M-Instruct (from its GGUF) and full fine-tuning of all-MiniLM-L6-v2 with a QA head.

Each (model, path) pair runs in its own process, built once through the engine's ``prepare_training``
(the same model loading, LoRA wrapping, tokenization, collator, seed and threads), so its peak resident
memory (``VmHWM``) is its own:

- ``trainer``: ``Trainer.train()`` exactly as the engine configures it (evaluation off: no validation split).
- ``bare``: the same model, a plain loop over the Trainer's own data loader (the same seeded order, so the
  same batches): ``model(**batch)``, ``loss.backward()``, ``AdamW.step()`` (fused, as the Trainer's default
  ``adamw_torch_fused``), ``zero_grad()``.

The processes take turns, one at a time, the order rotating from round to round, so they never compete for
the cores and drift in the machine's speed spreads evenly. Each round runs the timed number of steps + 1
per path; each step is timed from the end of the previous one to its own end (the first step opens the
round untimed: the data loader and optimizer state warm up), so the figures are the steady state:
non-padding tokens per second per step, the median and the best over every timed step of every round
(round 0 warms up and is not counted). The machine's cores are shared with other work, which only ever
slows a step down: the best step shows each path's own speed, the median what a run sees. Every example
fills ``--max-length`` tokens, so all batches have one shape and no padding. The Trainer path saves no
checkpoints here (a real run saves once per epoch, outside the steps; a save after each short round would
only slow whichever process runs next while the disk writes it back).

Target: the Trainer path's median tokens/s >= 0.9x the bare loop's, for each model.

Example:
    .venv/bin/python benchmarks/train_throughput.py --rounds 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from slm_eval.devices.worker import own_peak_rss_bytes
from slm_eval.models.catalogue import default_registry
from slm_eval.training.job import Hyperparameters, JobPaths

TARGET = 0.9
MIB = 1024 * 1024


@dataclass(frozen=True)
class Setup:
    """One process: a model trained one way (``trainer`` or ``bare``) on a prepared dataset."""

    label: str
    path: str
    model: str
    data: str
    work: str
    hp: Hyperparameters


def _border_qa() -> list[dict[str, Any]]:
    """The project's border-control QA paragraphs (SQuAD format)."""
    text = resources.files("slm_eval").joinpath("tasks/data/border_qa.json").read_text(encoding="utf-8")
    return list(json.loads(text)["data"])


def write_datasets(root: Path) -> dict[str, Path]:
    """Prepared ``train/train.jsonl`` folders for SFT and QA whose every example overflows the window.

    SFT: the question as the prompt, a response of several passages (cut at the window). QA: the question and
    its passage followed by the next ones, the answer in the first passage (so the first window holds it).
    """
    paragraphs = [paragraph for article in _border_qa() for paragraph in article["paragraphs"]]
    contexts = [paragraph["context"] for paragraph in paragraphs]
    sft, qa = [], []
    for index, paragraph in enumerate(paragraphs):
        following = " ".join(contexts[index + 1 :] + contexts[:index])
        for item in paragraph["qas"]:
            answer = item["answers"][0]
            sft.append(
                {"id": item["id"], "prompt": item["question"], "response": f"{paragraph['context']} {following}"}
            )
            qa.append(
                {
                    "id": item["id"],
                    "question": item["question"],
                    "context": f"{paragraph['context']} {following}",
                    "answers": {"text": [answer["text"]], "answer_start": [answer["answer_start"]]},
                }
            )
    folders = {}
    for name, records in (("sft", sft), ("qa", qa)):
        folder = root / name / "train"
        folder.mkdir(parents=True)
        (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
        folders[name] = folder
    return folders


def _paths(setup: Setup) -> JobPaths:
    work = Path(setup.work)
    return JobPaths(setup.model, Path(setup.data), None, work / "model", work / "output", work / "checkpoints", 0)


class _StepTimes:
    """The time and the non-padding tokens seen at the end of each step of one ``train()`` call (a callback)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        marks: list[tuple[float, int]] = []

        class Callback(TrainerCallback):  # type: ignore[misc]
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
                marks.clear()
                return control

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
                marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))
                return control

        self.callback = Callback()
        self.marks = marks


def _rates(marks: list[tuple[float, int]]) -> list[float]:
    """Tokens/s of each step after the first, from (time, cumulative tokens) at the end of each step."""
    return [(n2 - n1) / (t2 - t1) for (t1, n1), (t2, n2) in itertools.pairwise(marks) if t2 > t1]


def _serve(setup: Setup, pipe: Connection) -> None:
    """A child process: build the engine's training once, then run one round per message until told to stop."""
    import torch
    from transformers.trainer_utils import SaveStrategy

    from slm_eval.training.engine import prepare_training

    prepared = prepare_training(setup.hp, _paths(setup), progress=False)
    trainer = prepared.trainer
    # A real run saves once per epoch; here each short round would end in a save, whose disk writeback would
    # slow whichever process runs next. Per-step throughput is the figure, so the benchmark saves nothing.
    trainer.args.save_strategy = SaveStrategy.NO
    steps = _StepTimes()
    trainer.add_callback(steps.callback)
    model = trainer.model
    loader = trainer.get_train_dataloader()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=setup.hp.effective_learning_rate(),
        weight_decay=setup.hp.weight_decay,
        fused=True,
    )
    pipe.send({"loaded": True, "threads": torch.get_num_threads()})
    while True:
        message = pipe.recv()
        if message is None:
            break
        if setup.path == "trainer":
            trainer.train()
            marks = list(steps.marks)
        else:
            model.train()
            batches = iter(loader)
            marks, tokens = [], 0
            for _ in range(setup.hp.max_steps):
                batch = next(batches)
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(batch["attention_mask"].sum())
                marks.append((time.perf_counter(), tokens))
        pipe.send({"step_tokens_per_s": _rates(marks), "peak_rss_bytes": own_peak_rss_bytes()})


def _figure(values: list[float]) -> dict[str, Any]:
    return {"value": values and statistics.median(values), "unit": "non-padding tokens/s", "label": "measured"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--decoder-steps", type=int, default=3, help="timed SmolLM2 steps per round and path")
    parser.add_argument("--encoder-steps", type=int, default=8, help="timed MiniLM steps per round and path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per example")
    parser.add_argument("--decoder-batch", type=int, default=2)
    parser.add_argument("--encoder-batch", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    args = parser.parse_args()

    registry = default_registry()
    smollm2 = registry.resolve("smollm2-135m-instruct").source.locate(args.cache_dir)
    minilm = registry.resolve("all-minilm-l6-v2").source.locate(args.cache_dir)
    common: dict[str, Any] = {"threads": args.threads, "max_length": args.max_length, "seed": 0}
    # One untimed step opens each round (the data loader and optimizer state warm up).
    decoder_hp = Hyperparameters(
        task="sft", method="lora", batch_size=args.decoder_batch, max_steps=args.decoder_steps + 1, **common
    )
    encoder_hp = Hyperparameters(
        task="qa", method="full", batch_size=args.encoder_batch, max_steps=args.encoder_steps + 1, **common
    )
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as scratch:
        root = Path(scratch)
        data = write_datasets(root / "data")
        setups = [
            Setup(label, path, str(model), str(data[task]), str(root / f"{label}-{path}"), hp)
            for label, model, task, hp in (
                ("smollm2-135m-lora", smollm2, "sft", decoder_hp),
                ("minilm-l6-qa-full", minilm, "qa", encoder_hp),
            )
            for path in ("trainer", "bare")
        ]
        context = multiprocessing.get_context("spawn")
        children: dict[tuple[str, str], tuple[Any, Connection]] = {}
        for setup in setups:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_serve, args=(setup, child_end))
            process.start()
            reply = parent_end.recv()
            children[(setup.label, setup.path)] = (process, parent_end)
            print(f"loaded {setup.label} ({setup.path}, {reply['threads']} threads)", file=sys.stderr)

        rates: dict[tuple[str, str], list[float]] = {key: [] for key in children}
        peaks: dict[tuple[str, str], int | None] = {}
        keys = list(children)
        for round_index in range(args.rounds + 1):  # round 0 warms every process up and is not counted
            order = keys[round_index % len(keys) :] + keys[: round_index % len(keys)]
            for key in order:
                _, pipe = children[key]
                pipe.send({"round": round_index})
                reply = pipe.recv()
                peaks[key] = reply["peak_rss_bytes"]
                if round_index:
                    rates[key].extend(float(rate) for rate in reply["step_tokens_per_s"])
            if round_index:
                shown = ", ".join(
                    f"{label}/{path} {statistics.median(values):.0f} tok/s" for (label, path), values in rates.items()
                )
                print(f"round {round_index}: {shown}", file=sys.stderr)
        for process, pipe in children.values():
            pipe.send(None)
            process.join(timeout=60)

    models: dict[str, Any] = {}
    met: dict[str, bool] = {}
    for label in dict.fromkeys(label for label, _ in keys):
        entry: dict[str, Any] = {}
        for path in ("trainer", "bare"):
            values = rates[(label, path)]
            entry[path] = {
                "tokens_per_s_median": _figure(values),
                "tokens_per_s_best": {**_figure(values), "value": max(values)},
                "timed_steps": len(values),
                "peak_memory": {"value": (peaks[(label, path)] or 0) / MIB, "unit": "MiB", "label": "measured"},
            }
        median_ratio = entry["trainer"]["tokens_per_s_median"]["value"] / entry["bare"]["tokens_per_s_median"]["value"]
        best_ratio = entry["trainer"]["tokens_per_s_best"]["value"] / entry["bare"]["tokens_per_s_best"]["value"]
        entry["trainer_vs_bare_ratio_median"] = {"value": median_ratio, "unit": "x", "label": "measured"}
        entry["trainer_vs_bare_ratio_best"] = {"value": best_ratio, "unit": "x", "label": "measured"}
        models[label] = entry
        met[label] = median_ratio >= TARGET
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "threads": args.threads,
                "rounds": args.rounds,
                "tokens_per_example": args.max_length,
                "batch_size": {"smollm2-135m-lora": args.decoder_batch, "minilm-l6-qa-full": args.encoder_batch},
                "models": models,
                "target": {"trainer_vs_bare_ratio_median": f">= {TARGET}"},
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
