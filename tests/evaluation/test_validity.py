"""Validity rules after MLPerf and llama-bench: each rule alone, all met, and the CV by hand."""

from __future__ import annotations

import pytest

from slm_eval.devices.profiles import ValidityRules
from slm_eval.evaluation.validity import Validity, check_validity

RULES = ValidityRules(warmup_requests=1, min_requests=5, min_duration_s=2.0, max_cv=0.25)
# Five requests of 0.5 s (2.5 s in all) with steady time per token: every rule met.
DURATIONS = [0.5] * 5
STEADY = [0.010, 0.011, 0.009, 0.010, 0.010]


def test_all_rules_met_is_valid() -> None:
    validity = check_validity(RULES, DURATIONS, STEADY)
    assert validity == Validity(valid=True, reasons=())
    assert validity.to_dict() == {"valid": True, "reasons": []}


def test_too_few_timed_requests() -> None:
    validity = check_validity(RULES, [1.0] * 4, STEADY[:4])
    assert validity.valid is False
    assert validity.reasons == ("4 timed requests, fewer than the minimum of 5",)


def test_too_short_a_duration() -> None:
    validity = check_validity(RULES, [0.3] * 5, STEADY)
    assert validity.valid is False
    assert validity.reasons == ("timed requests lasted 1.500 s, less than the minimum of 2 s",)


def test_too_much_spread_with_a_hand_computed_cv() -> None:
    # mean 0.02; deviations -0.01, 0, +0.01; sample variance (1e-4 + 0 + 1e-4) / 2 = 1e-4; std 0.01; CV 0.5.
    validity = check_validity(RULES, [1.0, 1.0, 1.0, 1.0, 1.0], [0.01, 0.02, 0.03])
    assert validity.valid is False
    assert validity.reasons == ("time per output token varies too much: CV 0.50 > 0.25",)


def test_cv_just_under_the_bound_passes() -> None:
    # mean 0.02; std of (0.016, 0.02, 0.024) = 0.004; CV 0.2 <= 0.25.
    assert check_validity(RULES, DURATIONS, [0.016, 0.020, 0.024]).valid is True


@pytest.mark.parametrize("per_token", [[], [0.5]], ids=["none", "one"])
def test_cv_needs_two_requests_with_two_tokens(per_token: list[float]) -> None:
    assert check_validity(RULES, DURATIONS, per_token).valid is True


def test_every_broken_rule_is_reported() -> None:
    validity = check_validity(RULES, [0.1, 0.2], [0.01, 0.03])
    assert validity.valid is False
    assert len(validity.reasons) == 3
    assert validity.to_dict()["reasons"] == list(validity.reasons)


def test_a_zero_minimum_duration_accepts_instant_requests() -> None:
    rules = ValidityRules(min_requests=1, min_duration_s=0.0)
    assert check_validity(rules, [0.0], []).valid is True
    assert check_validity(rules, [], []).reasons == ("0 timed requests, fewer than the minimum of 1",)
