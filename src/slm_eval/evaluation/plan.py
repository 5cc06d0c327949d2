"""What an evaluation run does: its settings (kept in ``run.json`` for resume) and its request list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from slm_eval.devices.profiles import KNOWN_METRICS, DeviceProfile, ValidityRules
from slm_eval.errors import UserError
from slm_eval.models.registry import ModelCard
from slm_eval.tasks.base import Example, Task

RequestKind = Literal["warmup", "eval", "timing"]
CLEAN = "clean"
# Metrics that describe this machine's process; a remote API has none of them.
LOCAL_ONLY_METRICS = frozenset({"memory", "power"})


def select_metrics(requested: Sequence[str] | None, card: ModelCard, configured: Sequence[str]) -> tuple[str, ...]:
    """The metrics to compute, in the canonical order.

    Args:
        requested: ``--metrics`` values (``None``: every configured metric that applies to the model).
        card: the model; memory and power do not apply to a remote API.
        configured: the default metrics from ``config/evaluation.json``.

    Raises:
        UserError: an unknown metric, or one that does not apply to this model.
    """
    if requested:
        names = [name.strip().lower() for item in requested for name in item.split(",") if name.strip()]
        unknown = [name for name in names if name not in KNOWN_METRICS]
        if unknown:
            raise UserError(f"unknown metric '{unknown[0]}': choose from {', '.join(KNOWN_METRICS)}")
        if card.kind == "api":
            local = [name for name in names if name in LOCAL_ONLY_METRICS]
            if local:
                raise UserError(f"{local[0]} is not applicable to {card.name}, which runs on a remote API")
        chosen = set(names)
    else:
        chosen = set(configured) - (LOCAL_ONLY_METRICS if card.kind == "api" else set())
    return tuple(name for name in KNOWN_METRICS if name in chosen)


@dataclass(frozen=True)
class RunSettings:
    """Everything needed to run, or resume, an evaluation; stored as ``run.json``."""

    run_id: str
    model: str
    backend: str | None
    dataset: str | None
    task: str
    limit: int | None
    seed: int
    metrics: tuple[str, ...]
    device: DeviceProfile
    max_new_tokens: int
    threads: int | None
    context_length: int
    validity: ValidityRules
    robustness_rate: float
    perturbations: tuple[str, ...]
    bootstrap_confidence: float = 0.95
    bootstrap_resamples: int = 1000
    prefix_cache: bool = False
    dtype: str = "float32"
    trust_remote_code: bool = False
    encoder_task: str | None = None
    models_dir: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["device"] = self.device.model_dump(mode="json")
        data["validity"] = self.validity.model_dump(mode="json")
        data["metrics"] = list(self.metrics)
        data["perturbations"] = list(self.perturbations)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        """Rebuild settings written by :meth:`to_dict`.

        Raises:
            UserError: the file was written by an incompatible version or edited by hand.
        """
        try:
            return cls(
                **{
                    **data,
                    "device": DeviceProfile.model_validate(data["device"]),
                    "validity": ValidityRules.model_validate(data["validity"]),
                    "metrics": tuple(data["metrics"]),
                    "perturbations": tuple(data["perturbations"]),
                    "extra": dict(data.get("extra", {})),
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"run.json cannot be read back ({exc}); start a new run instead of resuming") from exc


@dataclass(frozen=True)
class RequestSpec:
    """One request for the worker, with what the record needs to say about it."""

    key: str
    kind: RequestKind
    example_id: str
    perturbation: str
    prompt: str
    context: str | None = None


def encoder_task_for(card: ModelCard, task: Task) -> str | None:
    """The head an encoder runs ``task`` with (``None`` for a decoder or an API, which generate text).

    Raises:
        UserError: the task needs generated text, which an encoder cannot produce.
    """
    if card.kind != "encoder":
        return None
    from slm_eval.tasks.squad import SquadTask

    if isinstance(task, SquadTask):
        return "qa"
    raise UserError(
        f"{task.name} needs generated text, which {card.name} (an encoder) cannot produce; encoders run "
        "extractive QA: --dataset border-qa (the default), a SQuAD-format file, or squad"
    )


def _spec(
    settings: RunSettings, task: Task, key: str, kind: RequestKind, example: Example, variant: str
) -> RequestSpec:
    """The request for ``example``: its prompt for a decoder, its question and passage for an encoder."""
    if settings.encoder_task is not None:
        return RequestSpec(key, kind, example.id, variant, example.question, example.context)
    return RequestSpec(key, kind, example.id, variant, task.prompt(example))


def request_key(kind: RequestKind, example_id: str, variant: str) -> str:
    """The key that ties a worker result to its record: ``eval|<example id>|clean``."""
    return f"{kind}|{example_id}|{variant}"


def build_requests(
    settings: RunSettings,
    task: Task,
    examples: Sequence[Example],
    finished: Iterable[str],
    perturbed: Mapping[str, Sequence[Example]],
) -> list[RequestSpec]:
    """The requests still to run: warm-up, unfinished clean and perturbed examples, then timing top-ups.

    Outputs already recorded (``finished`` keys) are not asked for again. When fewer clean requests
    remain than the validity rules' minimum — a resumed run, or a small ``--limit`` — finished examples
    are run again as ``timing`` requests, whose outputs are not scored, so latency is always measured in
    this session.
    """
    done = set(finished)
    requests: list[RequestSpec] = []
    for index in range(settings.validity.warmup_requests):
        example = examples[index % len(examples)]
        requests.append(_spec(settings, task, request_key("warmup", example.id, str(index)), "warmup", example, CLEAN))
    clean = [
        _spec(settings, task, request_key("eval", ex.id, CLEAN), "eval", ex, CLEAN)
        for ex in examples
        if request_key("eval", ex.id, CLEAN) not in done
    ]
    requests.extend(clean)
    timed_needed = settings.validity.min_requests - len(clean) if "latency" in settings.metrics else 0
    for index in range(max(0, timed_needed)):
        example = examples[index % len(examples)]
        requests.append(_spec(settings, task, request_key("timing", example.id, str(index)), "timing", example, CLEAN))
    for name, variants in perturbed.items():
        for example in variants:
            key = request_key("eval", example.id, name)
            if key not in done:
                requests.append(_spec(settings, task, key, "eval", example, name))
    return requests
