"""What the border-control benchmark holds each use case to: weights, latency budgets, score thresholds.

Part of ``config/evaluation.json`` (section ``benchmark``). The defaults state what an officer's device
needs: a document check answered within 2 s at the 90th percentile, almost never a forged document called
valid, and so on. Change them to your agency's own requirements.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slm_eval.tasks.catalogue import USE_CASES

# The names of the use cases, from the one catalogue that loads them.
USE_CASE_NAMES = tuple(USE_CASES)


class UseCaseRequirements(BaseModel):
    """One use case's weight in the overall score and what it must meet to pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: float = Field(gt=0, le=100, description="share of the overall score (weights are normalised)")
    latency_p90_ms: float = Field(gt=0, le=3_600_000, description="end-to-end budget per example, 90th percentile")
    min_score: float = Field(ge=0, le=1, description="the primary score must reach this")
    corpus_max: dict[str, float] = Field(default_factory=dict, description="corpus figures that must stay at or under")
    corpus_min: dict[str, float] = Field(default_factory=dict, description="corpus figures that must reach")


def _default_use_cases() -> dict[str, UseCaseRequirements]:
    return {
        "document-verification": UseCaseRequirements(
            weight=0.25, latency_p90_ms=2000, min_score=0.9, corpus_max={"false_accept_rate": 0.05}
        ),
        "multilingual-triage": UseCaseRequirements(weight=0.2, latency_p90_ms=3000, min_score=0.5),
        "entity-threat-detection": UseCaseRequirements(weight=0.2, latency_p90_ms=4000, min_score=0.7),
        "customs-help": UseCaseRequirements(weight=0.15, latency_p90_ms=5000, min_score=0.6),
        "report-generation": UseCaseRequirements(weight=0.2, latency_p90_ms=8000, min_score=0.7),
    }


class BenchmarkSettings(BaseModel):
    """The ``benchmark`` section of ``config/evaluation.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notes: str = ""
    use_cases: dict[str, UseCaseRequirements] = Field(default_factory=_default_use_cases)
    overall_min_score: float = Field(default=0.7, ge=0, le=1, description="the weighted overall score must reach this")

    @field_validator("use_cases")
    @classmethod
    def _known_use_cases(cls, use_cases: dict[str, UseCaseRequirements]) -> dict[str, UseCaseRequirements]:
        unknown = [name for name in use_cases if name not in USE_CASE_NAMES]
        if unknown:
            raise ValueError(f"unknown use case '{unknown[0]}'; known: {', '.join(USE_CASE_NAMES)}")
        return use_cases
