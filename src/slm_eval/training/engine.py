"""The training engine: one job (hyperparameters, folders) in, a trained model folder out, through ``Trainer``.

Container-safe: imports only the standard library, torch, transformers, peft and this package's
:mod:`slm_eval.errors` and ``slm_eval.training`` modules, so the SageMaker container runs it from a copy.

:func:`run_training` loads the base model (a GGUF file, a transformers folder or a hub id) with the head of
the task, wraps it in LoRA or trains it whole, evaluates on the validation split after each epoch, saves a
checkpoint each epoch, keeps the best epoch (lowest validation loss) and stops early when the loss stops
improving. ``paths.model_dir`` then holds the model (:func:`~slm_eval.training.engine_models.save_model`),
its tokenizer, ``training_metrics.json`` and ``hyperparameters.json``. Ctrl-C saves a checkpoint at the
current step and raises :class:`TrainingInterrupted`; ``resume=True`` continues from the latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slm_eval.errors import UserError
from slm_eval.training.engine_stop import StopFlag, stop_on_sigint
from slm_eval.training.job import (
    TRAIN_FILE,
    VALIDATION_FILE,
    Hyperparameters,
    JobPaths,
    latest_checkpoint,
    read_split,
)

log = logging.getLogger("slm_eval.training.engine")
METRICS_FILE = "training_metrics.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"
JOB_FILE = "job.json"  # in the checkpoint folder: what a resumed run must match
# Hyperparameters a resumed run may change: they do not alter what the checkpoint holds.
RESUMABLE_CHANGES = ("epochs", "max_steps", "early_stopping_patience", "merge", "threads")


class TrainingInterrupted(UserError):  # noqa: N818 (the name the launchers and the CLI use)
    """Training stopped on Ctrl-C after saving a checkpoint; ``--resume`` continues from it."""

    exit_code = 130

    def __init__(self, checkpoint: Path, step: int) -> None:
        super().__init__(
            f"training interrupted at step {step}: checkpoint saved in {checkpoint}; run the same command "
            "with --resume to continue"
        )
        self.checkpoint = checkpoint
        self.step = step


@dataclass(frozen=True)
class TrainingOutcome:
    """A finished training job.

    Attributes:
        model_dir: the folder holding the trained model, its tokenizer and the two JSON files.
        layout: ``full`` (a whole model), ``adapter`` (a LoRA adapter only) or ``merged`` (the adapter merged
            into the whole model at the root, the adapter itself in ``adapter/``).
        metrics: what ``training_metrics.json`` holds.
    """

    model_dir: Path
    layout: Literal["full", "adapter", "merged"]
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedTraining:
    """A Trainer ready to run one job, and what was needed to build it.

    Attributes:
        trainer: the ``transformers.Trainer``.
        tokenizer: the base model's tokenizer.
        labels: the head's label names (``ner``/``classify``).
        stop: the flag Ctrl-C sets.
        interrupt: the callback that turns the flag into a checkpoint and a stop.
        clock: the callback that times training without the evaluations.
    """

    trainer: Any
    tokenizer: Any
    labels: tuple[str, ...]
    stop: StopFlag
    interrupt: Any
    clock: Any


def usable_threads(requested: int | None) -> int:
    """``requested``, else the CPUs this process may run on."""
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def read_records(hp: Hyperparameters, folder: Path, file_name: str) -> list[dict[str, Any]]:
    """The records of one split, each checked for the fields its task needs."""
    from slm_eval.training.encoder_data import FIELDS
    from slm_eval.training.sft_data import SFT_FIELDS

    return read_split(folder, file_name, SFT_FIELDS if hp.task == "sft" else FIELDS[hp.task])


def tokenize_records(
    hp: Hyperparameters, records: list[dict[str, Any]], tokenizer: Any, labels: tuple[str, ...]
) -> FeatureDataset:
    """The tokenized features of one split's records, as a map-style dataset."""
    from slm_eval.training.encoder_data import build_encoder_examples
    from slm_eval.training.sft_data import build_sft_examples

    if hp.task == "sft":
        features = build_sft_examples(records, tokenizer, max_length=hp.max_length, chat=hp.chat).features
    else:
        examples = build_encoder_examples(hp.task, records, tokenizer, max_length=hp.max_length, labels=labels)
        features = examples.features
    return FeatureDataset(features)


class FeatureDataset:
    """A list of feature dicts, indexable like a map-style torch dataset."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def prepare_training(
    hp: Hyperparameters, paths: JobPaths, *, progress: bool = True, stop: StopFlag | None = None
) -> PreparedTraining:
    """Load the model and data of a job and build its Trainer (nothing is trained yet).

    Raises:
        UserError: bad data, a model that does not fit the task, or weights that cannot be loaded.
    """
    import torch
    import transformers

    from slm_eval.training.encoder_data import resolve_labels
    from slm_eval.training.engine_control import LossLogger, QuietProgress, StopAtFlag, TrainingClock
    from slm_eval.training.engine_models import (
        apply_lora,
        check_model_kind,
        load_model,
        load_tokenizer,
        locate_base_model,
    )
    from slm_eval.training.sft_data import PaddingCollator, pad_id

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    if not progress:
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # peft asks the model a property transformers renamed; the warning says nothing to the user.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # peft looks for the base's config.json beside a GGUF file to tell whether the vocabulary grew; it did not.
    warnings.filterwarnings("ignore", message="Could not find a config file", category=UserWarning)
    torch.set_num_threads(usable_threads(hp.threads))
    source = locate_base_model(paths.model)
    check_model_kind(source, hp.task)
    labels = resolve_labels(hp.task, hp.labels)
    train_records = read_records(hp, paths.train_dir, TRAIN_FILE)  # bad data fails before any model loads
    validation_records = None
    if paths.validation_dir is not None:
        validation_records = read_records(hp, paths.validation_dir, VALIDATION_FILE)
    else:
        log.warning("no validation split: training without evaluation, early stopping or best-epoch selection")
    tokenizer = load_tokenizer(source)
    train_set = tokenize_records(hp, train_records, tokenizer, labels)
    validation_set = None if validation_records is None else tokenize_records(hp, validation_records, tokenizer, labels)
    log.info("loading %s for %s (%s) ...", source.label, hp.task, hp.method)
    model = load_model(source, hp, labels)
    if hp.method == "lora":
        model = apply_lora(model, hp)
    evaluate = validation_set is not None
    args = _training_arguments(hp, paths, evaluate=evaluate, progress=progress, examples=len(train_set))
    stop = StopFlag() if stop is None else stop
    interrupt = StopAtFlag(stop)
    clock = TrainingClock()
    callbacks: list[Any] = [LossLogger(), interrupt, clock]
    if evaluate and hp.early_stopping_patience > 0:
        callbacks.append(transformers.EarlyStoppingCallback(early_stopping_patience=hp.early_stopping_patience))
    trainer = transformers.Trainer(
        model=model,
        args=args,
        data_collator=PaddingCollator(pad_id(tokenizer)),
        train_dataset=train_set,
        eval_dataset=validation_set,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.remove_callback(transformers.ProgressCallback)
    if progress:
        trainer.add_callback(QuietProgress())
    return PreparedTraining(trainer, tokenizer, labels, stop, interrupt, clock)


def _training_arguments(hp: Hyperparameters, paths: JobPaths, *, evaluate: bool, progress: bool, examples: int) -> Any:
    """Trainer settings: evaluate and save each epoch, keep the best, log a few times an epoch, seeded."""
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    steps_per_epoch = max(1, -(-examples // (hp.batch_size * hp.gradient_accumulation)))
    total_steps = hp.max_steps if hp.max_steps > 0 else math.ceil(hp.epochs * steps_per_epoch)
    return transformers.TrainingArguments(
        output_dir=str(paths.checkpoint_dir),
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps,
        learning_rate=hp.effective_learning_rate(),
        weight_decay=hp.weight_decay,
        warmup_steps=round(hp.warmup_ratio * total_steps),  # whole steps: read alike by transformers 4 and 5
        lr_scheduler_type="linear",
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="epoch",
        save_total_limit=2,  # the best checkpoint is kept besides the latest
        load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        logging_strategy="steps",
        logging_steps=max(1, min(25, steps_per_epoch // 4)),
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        seed=hp.seed,
        data_seed=hp.seed,
        remove_unused_columns=False,
        label_names=["start_positions", "end_positions"] if hp.task == "qa" else ["labels"],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        restore_callback_states_from_checkpoint=True,
    )


def run_training(
    hp: Hyperparameters,
    paths: JobPaths,
    *,
    resume: bool,
    stop: StopFlag | None = None,
    progress: bool = True,
) -> TrainingOutcome:
    """Train one job and write the result into ``paths.model_dir``.

    Args:
        hp: the hyperparameters.
        paths: the base model and the folders.
        resume: continue from the latest checkpoint in ``paths.checkpoint_dir`` (which must exist).
        stop: a flag that stops training at the end of the current step with a checkpoint (Ctrl-C sets it).
        progress: show a progress bar.

    Raises:
        TrainingInterrupted: Ctrl-C (or ``stop``) stopped training; the checkpoint is kept, nothing is written
            into the model folder.
        UserError: bad data, a model that does not fit the task, a model folder that is not empty, nothing
            to resume, or checkpoints of another run in the way.
    """
    from slm_eval.training.engine_models import save_model

    _check_model_dir(paths.model_dir)
    paths.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    latest = latest_checkpoint(paths.checkpoint_dir)
    checkpoint = _checkpoint_to_resume(paths, hp, resume, latest)
    prepared = prepare_training(hp, paths, progress=progress, stop=stop)
    tokens_before = _tokens_seen(checkpoint)
    with stop_on_sigint(prepared.stop):
        output = prepared.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    state = prepared.trainer.state
    if prepared.interrupt.stopped_at is not None or prepared.stop.is_set():
        saved = latest_checkpoint(paths.checkpoint_dir)
        raise TrainingInterrupted(saved or paths.checkpoint_dir, int(state.global_step))
    metrics = _metrics(prepared, output, tokens_before, checkpoint)
    layout = save_model(prepared.trainer.model, prepared.tokenizer, paths.model_dir, merge=hp.merge)
    description = {
        **hp.to_dict(),
        "effective_learning_rate": hp.effective_learning_rate(),
        "base_model": paths.model,
        "labels": list(prepared.labels),
        "layout": layout,
    }
    _write_json(paths.model_dir / HYPERPARAMETERS_FILE, description)
    _write_json(paths.model_dir / METRICS_FILE, metrics)
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    _write_json(paths.output_data_dir / METRICS_FILE, metrics)
    log.info(
        "trained %d steps in %.0f s (%.0f tokens/s); best validation loss %s; saved %s model in %s",
        metrics["steps"],
        metrics["seconds"],
        metrics["tokens_per_s"],
        "n/a" if metrics["best_eval_loss"] is None else f"{metrics['best_eval_loss']:.4f}",
        layout,
        paths.model_dir,
    )
    return TrainingOutcome(model_dir=paths.model_dir, layout=layout, metrics=metrics)


def _check_model_dir(model_dir: Path) -> None:
    if model_dir.is_file() or (model_dir.is_dir() and any(model_dir.iterdir())):
        raise UserError(f"the model folder {model_dir} is not empty: give an empty or new --model-dir")


def _checkpoint_to_resume(paths: JobPaths, hp: Hyperparameters, resume: bool, latest: Path | None) -> Path | None:
    """The checkpoint to continue from (``None`` when starting afresh); records or checks the job it belongs to."""
    job_file = paths.checkpoint_dir / JOB_FILE
    job = {"model": paths.model, "hyperparameters": hp.to_dict()}
    if not resume:
        if latest is not None:
            raise UserError(
                f"{paths.checkpoint_dir} holds checkpoints of an earlier run ({latest.name}): run with "
                "--resume to continue it, or give an empty --checkpoint-dir"
            )
        _write_json(job_file, job)
        return None
    if latest is None:
        raise UserError(f"nothing to resume: no checkpoint in {paths.checkpoint_dir}; run without --resume")
    if job_file.is_file():
        earlier = json.loads(job_file.read_text(encoding="utf-8"))
        before, now = earlier.get("hyperparameters", {}), hp.to_dict()
        changed = sorted(key for key in now if key not in RESUMABLE_CHANGES and before.get(key) != now[key])
        if changed:
            key = changed[0]
            raise UserError(
                f"the checkpoint in {paths.checkpoint_dir} was trained with {key.replace('_', '-')} "
                f"{before.get(key)!r}, not {now[key]!r}: resume with the same hyperparameters, or start afresh"
            )
        if earlier.get("model") != paths.model:
            log.warning(
                "resuming with base model %s; the checkpoint was started from %s", paths.model, earlier["model"]
            )
    log.info("resuming from %s", latest)
    return latest


def _tokens_seen(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(state.get("num_input_tokens_seen", 0) or 0)


def _metrics(prepared: PreparedTraining, output: Any, tokens_before: int, checkpoint: Path | None) -> dict[str, Any]:
    """What ``training_metrics.json`` holds."""
    state = prepared.trainer.state
    history = list(state.log_history)
    evaluations = [
        {"epoch": round(float(entry["epoch"]), 4), "step": int(entry["step"]), "eval_loss": float(entry["eval_loss"])}
        for entry in history
        if "eval_loss" in entry
    ]
    best = min(evaluations, key=lambda entry: entry["eval_loss"]) if evaluations else None
    tokens = int(state.num_input_tokens_seen)
    seconds = prepared.clock.training_seconds
    return {
        "train_loss": float(output.training_loss),
        "loss_history": [
            {"step": int(entry["step"]), "epoch": round(float(entry["epoch"]), 4), "loss": float(entry["loss"])}
            for entry in history
            if "loss" in entry
        ],
        "eval_loss_per_epoch": evaluations,
        "best_epoch": None if best is None else best["epoch"],
        "best_eval_loss": None if best is None else best["eval_loss"],
        "epochs": round(float(state.epoch or 0.0), 4),
        "steps": int(state.global_step),
        "max_steps": int(state.max_steps),
        "train_tokens": tokens,
        "tokens_per_s": (tokens - tokens_before) / seconds,
        "tokens_per_s_label": "measured (non-padding tokens over training time, evaluation excluded)",
        "seconds": prepared.clock.total,
        "early_stopped": bool(evaluations) and int(state.global_step) < int(state.max_steps),
        "resumed_from": None if checkpoint is None else str(checkpoint),
    }


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
