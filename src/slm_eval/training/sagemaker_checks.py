"""The CreateTrainingJob request checked against botocore's service model for SageMaker, offline.

Two passes over the model shipped inside botocore: botocore's own ``ParamValidator`` (the check boto3
runs before it sends a request, and that a ``Stubber`` runs on ``expected_params``: required members,
unknown members, types, minimum lengths and values), then what botocore leaves to the service: enums
(the instance type), patterns (the job name, the role ARN, S3 URIs) and maximum lengths (63 characters
of job name, 2500 per hyperparameter value). A bad instance type is so refused here, with the nearest
valid names, instead of by SageMaker after the uploads.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any

from slm_eval.errors import UserError, extra_install_hint, require_module

OPERATION = "CreateTrainingJob"


def request_problems(request: dict[str, Any], service_model: Any | None = None) -> list[str]:
    """Every way ``request`` breaks the CreateTrainingJob input shape; empty when it is valid.

    Args:
        request: the keyword arguments of ``create_training_job``.
        service_model: botocore's SageMaker service model (default: the one bundled with botocore).
    """
    model = service_model if service_model is not None else sagemaker_service_model()
    shape = model.operation_model(OPERATION).input_shape
    validate = require_module("botocore.validate", "checking a SageMaker request", extra_install_hint("sagemaker"))
    report = validate.ParamValidator().validate(request, shape)
    if report.has_errors():
        return [line.strip() for line in report.generate_report().splitlines() if line.strip()]
    return list(_service_rules(request, shape, OPERATION))


def check_request(request: dict[str, Any], service_model: Any | None = None) -> None:
    """Refuse a request SageMaker would refuse.

    Raises:
        UserError: the first problem, naming the field and the fix where one is known.
    """
    problems = request_problems(request, service_model)
    if problems:
        raise UserError(f"the CreateTrainingJob request is not valid: {problems[0]}")


def sagemaker_service_model() -> Any:
    """botocore's service model for SageMaker, read from the files bundled with botocore (no call)."""
    botocore_session = require_module(
        "botocore.session", "checking a SageMaker request", extra_install_hint("sagemaker")
    )
    return botocore_session.get_session().get_service_model("sagemaker")


def _service_rules(value: Any, shape: Any, where: str) -> Iterator[str]:
    kind = shape.type_name
    if kind == "structure":
        for name, member in shape.members.items():
            if name in value:
                yield from _service_rules(value[name], member, f"{where}.{name}")
    elif kind == "list":
        yield from _length(len(value), shape, where, "items")
        for index, item in enumerate(value):
            yield from _service_rules(item, shape.member, f"{where}[{index}]")
    elif kind == "map":
        yield from _length(len(value), shape, where, "entries")
        for key, item in value.items():
            yield from _service_rules(key, shape.key, f"{where} key {key!r}")
            yield from _service_rules(item, shape.value, f"{where}[{key!r}]")
    elif kind == "string":
        yield from _string(value, shape, where)
    elif kind in {"integer", "long"}:
        maximum = shape.metadata.get("max")
        if maximum is not None and value > maximum:
            yield f"{where}={value} is above its maximum {maximum}"


def _string(value: str, shape: Any, where: str) -> Iterator[str]:
    enum = shape.enum
    if enum and value not in enum:
        near = difflib.get_close_matches(value, enum, n=3)
        hint = f": did you mean {', '.join(near)}?" if near else f": one of {', '.join(enum[:8])}, ..."
        yield f"{where}={value!r} is not a valid {shape.name}{hint}"
        return
    yield from _length(len(value), shape, where, "characters")
    pattern = shape.metadata.get("pattern")
    if pattern and not _full_match(pattern, value):
        yield f"{where}={value!r} does not match the pattern {pattern}"


def _length(size: int, shape: Any, where: str, unit: str) -> Iterator[str]:
    maximum = shape.metadata.get("max")
    if maximum is not None and size > maximum:
        yield f"{where} has {size} {unit}, more than its maximum {maximum}"


def _full_match(pattern: str, value: str) -> bool:
    try:
        compiled = re.compile(pattern)
    except re.error:
        # Java-only syntax such as \p{L}: SageMaker checks it; Python's re cannot.
        return True
    return compiled.fullmatch(value) is not None
