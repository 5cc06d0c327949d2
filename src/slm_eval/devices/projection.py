"""Roofline projection of tokens/s and latency from this machine's measurements to a device profile.

This machine is not the target device, so each profile gets figures labelled ``projected``:

* Decode (one token at a time) reads every weight once per token, so it is bound by memory
  bandwidth. The host's achieved share of its bandwidth is assumed to carry over::

      decode_tps = min(host_decode_tps * target_bw / host_bw,  target_bw * 1e9 / model_bytes)

* Prompt processing (many tokens per weight read) is bound by compute, about ``2 * params`` FLOPs
  per token, and the host's achieved share of its peak is assumed to carry over::

      prompt_tps = min(host_prompt_tps * target_gflops / host_gflops,  target_gflops * 1e9 / (2 * params))

* A request of ``P`` prompt and ``M`` output tokens then takes::

      latency_s = P / prompt_tps + M / decode_tps        time_per_output_token_ms = 1000 / decode_tps

The second term of each ``min`` is the roofline's ideal bound; a projection never exceeds it.
Bandwidths are in GB/s (1e9 bytes), compute in GFLOPS (1e9 FLOP/s). Assumptions and limits, and a
worked example, are in ``docs/projection.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from slm_eval.devices.profiles import DeviceProfile
from slm_eval.metrics.figures import Figure


@dataclass(frozen=True)
class HostPerformance:
    """What this machine achieved on the workload, and its capacity (measured or configured)."""

    decode_tokens_per_s: float
    prompt_tokens_per_s: float
    memory_bandwidth_gbs: float
    peak_gflops: float

    def __post_init__(self) -> None:
        """Reject figures a projection cannot scale: each must be positive."""
        for name in ("decode_tokens_per_s", "prompt_tokens_per_s", "memory_bandwidth_gbs", "peak_gflops"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"host {name} must be positive (got {value})")


@dataclass(frozen=True)
class Projection:
    """Projected throughput and latency on one device, each figure labelled ``projected``."""

    device: str
    decode_tokens_per_s: Figure
    prompt_tokens_per_s: Figure
    time_per_output_token: Figure
    request_latency: Figure
    decode_bound_tokens_per_s: Figure
    prompt_bound_tokens_per_s: Figure
    decode_capped: bool
    prompt_capped: bool
    prompt_tokens: int
    output_tokens: int
    formula: str

    def to_dict(self) -> dict[str, object]:
        """The JSON shape used in summaries: figures as ``{"value", "unit", "label"}``."""
        return {
            "device": self.device,
            "decode_tokens_per_s": self.decode_tokens_per_s.to_dict(),
            "prompt_tokens_per_s": self.prompt_tokens_per_s.to_dict(),
            "time_per_output_token": self.time_per_output_token.to_dict(),
            "request_latency": self.request_latency.to_dict(),
            "decode_bound_tokens_per_s": self.decode_bound_tokens_per_s.to_dict(),
            "prompt_bound_tokens_per_s": self.prompt_bound_tokens_per_s.to_dict(),
            "decode_capped": self.decode_capped,
            "prompt_capped": self.prompt_capped,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "formula": self.formula,
        }


def project(
    host: HostPerformance,
    *,
    target_bandwidth_gbs: float,
    target_peak_gflops: float,
    model_bytes: float,
    parameters: float,
    prompt_tokens: int,
    output_tokens: int,
    device: str = "target",
) -> Projection:
    """Project the host's tokens/s to a device with the given bandwidth and peak compute.

    Args:
        host: the host's achieved tokens/s and its bandwidth and peak compute.
        target_bandwidth_gbs: the device's memory bandwidth, GB/s.
        target_peak_gflops: the device's peak compute, GFLOPS.
        model_bytes: bytes read per decoded token: the size of the weights.
        parameters: the model's parameter count.
        prompt_tokens: prompt length of the request whose latency is projected.
        output_tokens: output length of that request.
        device: the device's name, for the result.

    Raises:
        ValueError: a figure that is not positive, or a negative token count.
    """
    for name, value in (
        ("target_bandwidth_gbs", target_bandwidth_gbs),
        ("target_peak_gflops", target_peak_gflops),
        ("model_bytes", model_bytes),
        ("parameters", parameters),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive (got {value})")
    if prompt_tokens < 0 or output_tokens < 0:
        raise ValueError(f"token counts must not be negative (got {prompt_tokens} prompt, {output_tokens} output)")

    decode_scaled = host.decode_tokens_per_s * target_bandwidth_gbs / host.memory_bandwidth_gbs
    decode_bound = target_bandwidth_gbs * 1e9 / model_bytes
    decode = min(decode_scaled, decode_bound)
    prompt_scaled = host.prompt_tokens_per_s * target_peak_gflops / host.peak_gflops
    prompt_bound = target_peak_gflops * 1e9 / (2 * parameters)
    prompt = min(prompt_scaled, prompt_bound)
    latency_s = prompt_tokens / prompt + output_tokens / decode

    formula = (
        f"decode_tps = min(host_decode_tps * target_bw / host_bw, target_bw * 1e9 / model_bytes)"
        f" = min({host.decode_tokens_per_s:.4g} * {target_bandwidth_gbs:.4g} / {host.memory_bandwidth_gbs:.4g},"
        f" {target_bandwidth_gbs:.4g} * 1e9 / {model_bytes:.4g}) = {decode:.4g} tokens/s; "
        f"prompt_tps = min(host_prompt_tps * target_gflops / host_gflops, target_gflops * 1e9 / (2 * params))"
        f" = min({host.prompt_tokens_per_s:.4g} * {target_peak_gflops:.4g} / {host.peak_gflops:.4g},"
        f" {target_peak_gflops:.4g} * 1e9 / (2 * {parameters:.4g})) = {prompt:.4g} tokens/s; "
        f"latency = {prompt_tokens} / prompt_tps + {output_tokens} / decode_tps = {latency_s * 1000:.4g} ms"
    )
    return Projection(
        device=device,
        decode_tokens_per_s=Figure(decode, "tokens/s", "projected"),
        prompt_tokens_per_s=Figure(prompt, "tokens/s", "projected"),
        time_per_output_token=Figure(1000.0 / decode, "ms", "projected"),
        request_latency=Figure(latency_s * 1000.0, "ms", "projected"),
        decode_bound_tokens_per_s=Figure(decode_bound, "tokens/s", "projected"),
        prompt_bound_tokens_per_s=Figure(prompt_bound, "tokens/s", "projected"),
        decode_capped=decode_scaled > decode_bound,
        prompt_capped=prompt_scaled > prompt_bound,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        formula=formula,
    )


def project_to_profile(
    host: HostPerformance,
    profile: DeviceProfile,
    *,
    model_bytes: float,
    parameters: float,
    prompt_tokens: int,
    output_tokens: int,
) -> Projection:
    """Project to a device profile; a figure the profile leaves ``None`` is this machine's own.

    The ``host`` profile (all ``None``) therefore projects onto this machine itself: the host's
    tokens/s, capped only by the roofline bounds.
    """
    bandwidth = profile.memory_bandwidth_gbs if profile.memory_bandwidth_gbs is not None else host.memory_bandwidth_gbs
    gflops = profile.peak_gflops if profile.peak_gflops is not None else host.peak_gflops
    return project(
        host,
        target_bandwidth_gbs=bandwidth,
        target_peak_gflops=gflops,
        model_bytes=model_bytes,
        parameters=parameters,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        device=profile.name,
    )
