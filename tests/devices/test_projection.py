"""Roofline projection against hand-computed numbers, and the host capacity micro-benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

import pytest

from slm_eval.devices.host_capacity import measure_memory_bandwidth_gbs, measure_peak_gflops
from slm_eval.devices.profiles import DeviceProfile
from slm_eval.devices.projection import HostPerformance, Projection, project, project_to_profile

HOST = HostPerformance(
    decode_tokens_per_s=150.0, prompt_tokens_per_s=1500.0, memory_bandwidth_gbs=50.0, peak_gflops=1000.0
)


class _Model(TypedDict):
    model_bytes: float
    parameters: float


MODEL: _Model = {"model_bytes": 1.0e8, "parameters": 135e6}


def _pi5() -> Projection:
    return project(
        HOST,
        target_bandwidth_gbs=17.1,
        target_peak_gflops=153.6,
        prompt_tokens=128,
        output_tokens=64,
        device="raspberry-pi-5",
        **MODEL,
    )


def test_hand_computed_projection() -> None:
    projection = _pi5()
    assert projection.device == "raspberry-pi-5"
    assert projection.decode_tokens_per_s.value == pytest.approx(150 * 17.1 / 50)  # 51.3
    assert projection.prompt_tokens_per_s.value == pytest.approx(1500 * 153.6 / 1000)  # 230.4
    assert projection.time_per_output_token.value == pytest.approx(1000 / 51.3)  # 19.49 ms
    assert projection.request_latency.value == pytest.approx((128 / 230.4 + 64 / 51.3) * 1000)  # 1803.1 ms
    assert projection.request_latency.value == pytest.approx(1803.12, abs=0.01)
    assert projection.decode_bound_tokens_per_s.value == pytest.approx(171.0)
    assert projection.prompt_bound_tokens_per_s.value == pytest.approx(153.6e9 / (2 * 135e6))
    assert not projection.decode_capped
    assert not projection.prompt_capped


def test_every_figure_is_labelled_projected_with_its_unit() -> None:
    projection = _pi5()
    figures = [
        projection.decode_tokens_per_s,
        projection.prompt_tokens_per_s,
        projection.time_per_output_token,
        projection.request_latency,
        projection.decode_bound_tokens_per_s,
        projection.prompt_bound_tokens_per_s,
    ]
    assert {figure.label for figure in figures} == {"projected"}
    assert projection.decode_tokens_per_s.unit == "tokens/s"
    assert projection.time_per_output_token.unit == "ms"
    assert projection.request_latency.unit == "ms"
    assert projection.decode_tokens_per_s.format().endswith("(projected)")


def test_formula_shows_the_arithmetic() -> None:
    formula = _pi5().formula
    assert "min(150 * 17.1 / 50, 17.1 * 1e9 / 1e+08) = 51.3 tokens/s" in formula
    assert "min(1500 * 153.6 / 1000, 153.6 * 1e9 / (2 * 1.35e+08)) = 230.4 tokens/s" in formula
    assert "latency = 128 / prompt_tps + 64 / decode_tps = 1803 ms" in formula


def test_projection_is_capped_at_the_roofline_bounds() -> None:
    cached_host = HostPerformance(
        decode_tokens_per_s=300.0, prompt_tokens_per_s=5000.0, memory_bandwidth_gbs=20.0, peak_gflops=500.0
    )
    projection = project(
        cached_host, target_bandwidth_gbs=68.0, target_peak_gflops=144.0, prompt_tokens=10, output_tokens=10, **MODEL
    )
    # 300 * 68 / 20 = 1020 > 68e9 / 1e8 = 680; 5000 * 144 / 500 = 1440 > 144e9 / 2.7e8 = 533.3
    assert projection.decode_tokens_per_s.value == pytest.approx(680.0)
    assert projection.prompt_tokens_per_s.value == pytest.approx(144e9 / 2.7e8)
    assert projection.decode_capped
    assert projection.prompt_capped


def test_identity_when_the_target_is_the_host() -> None:
    projection = project(
        HOST, target_bandwidth_gbs=50.0, target_peak_gflops=1000.0, prompt_tokens=100, output_tokens=50, **MODEL
    )
    assert projection.decode_tokens_per_s.value == pytest.approx(150.0)
    assert projection.prompt_tokens_per_s.value == pytest.approx(1500.0)
    assert projection.request_latency.value == pytest.approx((100 / 1500 + 50 / 150) * 1000)


def test_host_profile_projects_onto_this_machine() -> None:
    host = DeviceProfile(name="host")
    projection = project_to_profile(host=HOST, profile=host, prompt_tokens=1, output_tokens=1, **MODEL)
    assert projection.device == "host"
    assert projection.decode_tokens_per_s.value == pytest.approx(150.0)
    assert projection.prompt_tokens_per_s.value == pytest.approx(1500.0)


def test_profile_figures_are_used() -> None:
    pi = DeviceProfile(name="raspberry-pi-5", cores=4, memory_mib=8192, memory_bandwidth_gbs=17.1, peak_gflops=153.6)
    projection = project_to_profile(HOST, pi, prompt_tokens=128, output_tokens=64, **MODEL)
    assert projection.to_dict() == _pi5().to_dict()
    assert projection.to_dict()["decode_tokens_per_s"] == {
        "value": pytest.approx(51.3),
        "unit": "tokens/s",
        "label": "projected",
    }


def test_no_prompt_or_output_tokens() -> None:
    projection = project(
        HOST, target_bandwidth_gbs=50.0, target_peak_gflops=1000.0, prompt_tokens=0, output_tokens=0, **MODEL
    )
    assert projection.request_latency.value == 0.0


@pytest.mark.parametrize("field", ["decode_tokens_per_s", "prompt_tokens_per_s", "memory_bandwidth_gbs", "peak_gflops"])
def test_host_figures_must_be_positive(field: str) -> None:
    values = {"decode_tokens_per_s": 1.0, "prompt_tokens_per_s": 1.0, "memory_bandwidth_gbs": 1.0, "peak_gflops": 1.0}
    values[field] = 0.0
    with pytest.raises(ValueError, match=field):
        HostPerformance(**values)


def test_impossible_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="model_bytes"):
        project(HOST, target_bandwidth_gbs=1, target_peak_gflops=1, model_bytes=0, parameters=1, prompt_tokens=1,
                output_tokens=1)  # fmt: skip
    with pytest.raises(ValueError, match="target_bandwidth_gbs"):
        project(HOST, target_bandwidth_gbs=-1, target_peak_gflops=1, prompt_tokens=1, output_tokens=1, **MODEL)
    with pytest.raises(ValueError, match="token counts"):
        project(HOST, target_bandwidth_gbs=1, target_peak_gflops=1, prompt_tokens=-1, output_tokens=1, **MODEL)


def test_memory_bandwidth_is_a_positive_measurement() -> None:
    figure = measure_memory_bandwidth_gbs(size_mib=8, repeats=2)
    assert figure.label == "measured"
    assert figure.unit == "GB/s"
    assert figure.value is not None and figure.value > 0


def test_memory_bandwidth_counts_read_and_write_bytes() -> None:
    ticks: Iterator[float] = iter([0.0, 0.5, 10.0, 10.25])  # copies of 0.5 s and 0.25 s
    figure = measure_memory_bandwidth_gbs(size_mib=4, repeats=2, threads=2, clock=lambda: next(ticks))
    assert figure.value == pytest.approx(2 * 4 * 1024 * 1024 / 0.25 / 1e9)


def test_peak_gflops_is_a_positive_measurement() -> None:
    figure = measure_peak_gflops(n=128, repeats=2)
    assert figure.label == "measured"
    assert figure.unit == "GFLOPS"
    assert figure.value is not None and figure.value > 0


def test_peak_gflops_counts_two_n_cubed() -> None:
    ticks: Iterator[float] = iter([0.0, 0.001, 1.0, 1.002])
    figure = measure_peak_gflops(n=64, repeats=2, clock=lambda: next(ticks))
    assert figure.value == pytest.approx(2 * 64**3 / 0.001 / 1e9)


def test_a_clock_that_never_advances_gives_no_value() -> None:
    assert measure_peak_gflops(n=8, repeats=2, clock=lambda: 1.0).value is None
    assert measure_memory_bandwidth_gbs(size_mib=1, repeats=2, threads=1, clock=lambda: 1.0).value is None


def test_capacity_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        measure_memory_bandwidth_gbs(size_mib=0)
    with pytest.raises(ValueError):
        measure_memory_bandwidth_gbs(size_mib=1, threads=0)
    with pytest.raises(ValueError):
        measure_peak_gflops(n=0)
