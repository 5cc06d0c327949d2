"""Validity rules for timed runs, after MLPerf and llama-bench.

Warm-up requests run first and are not counted; a run needs a minimum number of timed requests and a
minimum timed duration; and the spread of time per output token, as a coefficient of variation, must
stay under a bound. A run that breaks a rule is still reported, marked ``valid: false`` with reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from slm_eval.devices.profiles import ValidityRules
from slm_eval.metrics.timing import distribution


@dataclass(frozen=True)
class Validity:
    """The verdict and every broken rule."""

    valid: bool
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {"valid": self.valid, "reasons": list(self.reasons)}


def check_validity(rules: ValidityRules, durations_s: Sequence[float], per_token_s: Sequence[float]) -> Validity:
    """Apply the rules to the timed requests of a run.

    Args:
        rules: the thresholds.
        durations_s: end-to-end seconds of each timed request (warm-up excluded).
        per_token_s: time per output token of each timed request that produced two or more tokens.
    """
    reasons = []
    if len(durations_s) < rules.min_requests:
        reasons.append(f"{len(durations_s)} timed requests, fewer than the minimum of {rules.min_requests}")
    total = sum(durations_s)
    if total < rules.min_duration_s:
        reasons.append(f"timed requests lasted {total:.3f} s, less than the minimum of {rules.min_duration_s:g} s")
    spread = distribution(list(per_token_s))
    cv = spread.coefficient_of_variation if spread is not None else None
    if cv is not None and spread is not None and spread.n >= 2 and cv > rules.max_cv:
        reasons.append(f"time per output token varies too much: CV {cv:.2f} > {rules.max_cv:g}")
    return Validity(valid=not reasons, reasons=tuple(reasons))
