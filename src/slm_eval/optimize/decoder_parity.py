"""Prove an ONNX decoder export behaves like its PyTorch original: logits on fixed inputs, greedy outputs.

The original (a transformers folder, or a GGUF file dequantized) runs in float32 through transformers; the
export runs through onnxruntime-genai's generator on the CPU. Each prompt is tokenized once by the original's
tokenizer (through its chat template when it has one, as the backends use chat models), and the same token
ids go to both models, so the tokenizers cannot hide a difference.

Figures, per prompt and overall:

* **max abs diff**: the largest absolute difference between the two last-position logit vectors.
* **cosine**: the cosine similarity of the two logit vectors over the vocabulary, each centred on its mean.
  Softmax ignores a constant shift of the logits, and quantization often shifts them all together: on
  SmolLM2-135M int4 one prompt gave a raw cosine of 0.11 with the same top token (a centred cosine of 0.91).
* **top-1 agreement**: the share of prompts whose most likely next token is the same.
* **greedy agreement**: both models continue each prompt for ``max_new_tokens`` steps, each taking the argmax
  of its own logits (end of sequence not treated specially, so both give exactly that many tokens); the share
  of positions whose tokens are equal, and the first position where they differ.

Tolerances (:data:`TOLERANCES`), from what the exports measured on this machine (onnxruntime-genai 0.18):

* ``fp32``: the same arithmetic in another runtime. SmolLM2-135M and the tiny seed architectures differ by
  at most 5e-5 and 2e-6 in the logits, cosine 1.0 to 10 digits; the gate is max abs diff <= 1e-2 and
  cosine >= 0.9999, which one MLP weight scaled by 1.5 fails by orders of magnitude.
* ``int8``: round-to-nearest block-wise int8 weights with int8 activations. SmolLM2-135M gave cosines of
  0.998 to 0.999 (max abs diff up to 1.4) on the ``convert`` prompts; the gate is cosine >= 0.99. Absolute
  differences are not gated.
* ``int4``: round-to-nearest block-wise int4 on a 135M model is lossy by nature. SmolLM2-135M gave centred
  cosines of 0.92 to 0.94 on the chat-templated ``convert`` prompts and 0.76 to 0.95 on short prompts
  without a template (the tiny seed models 0.88 to 0.98); the same int4 rounding simulated in PyTorch gives
  0.80 to 0.85 on those short prompts, so the export adds no error of its own. The gate is cosine >= 0.70:
  it passes a faithful int4 export and fails a wrecked one (a layer norm scaled by 10 gave 0.48, an
  attention output negated 0.11), but a subtler fault hides in the int4 noise (one layer's MLP output
  tripled gave 0.89). Greedy agreement is reported, not gated, for every precision: near-ties flip tokens
  (int8 SmolLM2 already changed the first token of one prompt out of three).

Example::

    report = check_decoder_parity(gguf, Path("data/models/smollm2-135m-instruct/onnx-int4"),
                                  ["What is a visa?"], precision="int4")
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slm_eval.backends.onnx_decoder import import_genai
from slm_eval.errors import UserError
from slm_eval.logs import get_logger
from slm_eval.optimize.onnx_decoder_export import load_torch_decoder

log = get_logger(__name__)


@dataclass(frozen=True)
class ParityTolerances:
    """The limits an export must keep to pass.

    Attributes:
        max_abs_diff: the largest allowed absolute logit difference; ``None`` when not gated.
        min_cosine: the smallest allowed centred cosine similarity of the logits.
    """

    max_abs_diff: float | None
    min_cosine: float


TOLERANCES: dict[str, ParityTolerances] = {
    "fp32": ParityTolerances(max_abs_diff=1e-2, min_cosine=0.9999),
    "int8": ParityTolerances(max_abs_diff=None, min_cosine=0.99),
    "int4": ParityTolerances(max_abs_diff=None, min_cosine=0.70),
}


@dataclass(frozen=True)
class PromptParity:
    """The comparison on one prompt.

    Attributes:
        prompt: the prompt as given.
        input_tokens: token ids fed to both models (the chat template included).
        max_abs_diff: the largest absolute difference of the last-position logits.
        cosine: the centred cosine similarity of the last-position logits.
        top1_match: whether both models' most likely next token is the same.
        reference_tokens: the PyTorch original's greedy continuation.
        onnx_tokens: the ONNX export's greedy continuation.
        token_agreement: the share of positions where the two continuations agree.
        first_divergence: the first position where they differ; ``None`` when they never do.
    """

    prompt: str
    input_tokens: int
    max_abs_diff: float
    cosine: float
    top1_match: bool
    reference_tokens: tuple[int, ...]
    onnx_tokens: tuple[int, ...]
    token_agreement: float
    first_divergence: int | None


@dataclass(frozen=True)
class ParityReport:
    """How closely an ONNX decoder export follows its PyTorch original.

    Attributes:
        precision: the export's precision, which chose the tolerances.
        prompts: the comparison on each prompt.
        max_abs_diff: the largest absolute logit difference over all prompts.
        min_cosine: the smallest centred logit cosine over all prompts.
        mean_cosine: the mean centred logit cosine.
        top1_agreement: the share of prompts whose next most likely token agrees.
        token_agreement: the share of greedy positions that agree, over all prompts.
        first_divergence: the earliest greedy position where the models differ; ``None`` when never.
        max_new_tokens: the length of each greedy continuation.
        tolerances: the limits applied.
        passed: whether every gated figure is within its limit.
        failures: one line per limit broken.
    """

    precision: str
    prompts: tuple[PromptParity, ...]
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    top1_agreement: float
    token_agreement: float
    first_divergence: int | None
    max_new_tokens: int
    tolerances: ParityTolerances
    passed: bool
    failures: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for a manifest, ``--json`` or a report)."""
        document = asdict(self)
        document["prompts"] = [asdict(item) for item in self.prompts]
        for item in document["prompts"]:
            item["reference_tokens"] = list(item["reference_tokens"])
            item["onnx_tokens"] = list(item["onnx_tokens"])
        document["failures"] = list(self.failures)
        document["method"] = "measured: float32 PyTorch vs onnxruntime-genai on CPU, same token ids"
        return document


def tolerances_for(precision: str) -> ParityTolerances:
    """The tolerances for ``precision``.

    Raises:
        UserError: an unknown precision.
    """
    try:
        return TOLERANCES[precision]
    except KeyError:
        raise UserError(f"unknown precision '{precision}': choose one of {', '.join(TOLERANCES)}") from None


def centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two logit vectors after subtracting each one's mean (1.0 for two constant ones)."""
    x = a.astype(np.float64) - float(a.mean())
    y = b.astype(np.float64) - float(b.mean())
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    if norms == 0.0:
        return 1.0 if not x.any() and not y.any() else 0.0
    return float(x @ y / norms)


def greedy_agreement(reference: Sequence[int], candidate: Sequence[int]) -> tuple[float, int | None]:
    """The share of positions where two token sequences agree, and the first where they do not."""
    length = max(len(reference), len(candidate))
    if length == 0:
        return 1.0, None
    same = sum(1 for left, right in zip(reference, candidate, strict=False) if left == right)
    first = next(
        (i for i in range(length) if i >= len(reference) or i >= len(candidate) or reference[i] != candidate[i]),
        None,
    )
    return same / length, first


def _input_ids(tokenizer: Any, prompt: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(str(text), add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    return [int(token) for token in ids]


def _torch_run(model: Any, ids: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    """The last-position logits of ``ids`` and a greedy continuation of ``steps`` tokens, in PyTorch."""
    import torch

    # transformers 5.2x names the KV cache argument ``cache``; earlier versions ``past_key_values``.
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    tokens: list[int] = []
    with torch.inference_mode():
        output = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=True)
        logits = output.logits[0, -1].float()
        first = logits.numpy().copy()
        while len(tokens) < steps:
            tokens.append(int(logits.argmax()))
            if len(tokens) == steps:
                break
            kv = output.get("cache") if output.get("cache") is not None else output.get("past_key_values")
            output = model(input_ids=torch.tensor([[tokens[-1]]], dtype=torch.long), use_cache=True, **{key: kv})
            logits = output.logits[0, -1].float()
    return first, tokens


def _onnx_run(genai: Any, model: Any, ids: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    """The same as :func:`_torch_run` through onnxruntime-genai's generator (raw ``logits`` output)."""
    params = genai.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max(steps, 1), do_sample=False, batch_size=1)
    generator = genai.Generator(model, params)
    generator.append_tokens(np.asarray(ids, dtype=np.int32))
    logits = np.asarray(generator.get_output("logits"), dtype=np.float32)[0, -1]
    first = logits.copy()
    tokens: list[int] = []
    while len(tokens) < steps:
        tokens.append(int(logits.argmax()))
        if len(tokens) == steps:
            break
        generator.append_tokens(np.asarray([tokens[-1]], dtype=np.int32))
        logits = np.asarray(generator.get_output("logits"), dtype=np.float32)[0, -1]
    return first, tokens


def _load_onnx(genai: Any, onnx_dir: Path) -> Any:
    try:
        config = genai.Config(str(onnx_dir))
        config.clear_providers()  # parity is measured on the CPU, the provider every export can run on
        return genai.Model(config)
    except RuntimeError as exc:
        text = str(exc).strip().splitlines()
        raise UserError(
            f"onnxruntime-genai cannot load {onnx_dir} ({text[0] if text else 'unknown error'}); export it again"
        ) from exc


def _compare(prompt: str, ids: list[int], reference: Any, exported: Any, genai: Any, steps: int) -> PromptParity:
    ref_logits, ref_tokens = _torch_run(reference, ids, steps)
    onnx_logits, onnx_tokens = _onnx_run(genai, exported, ids, steps)
    if ref_logits.shape != onnx_logits.shape:
        raise UserError(
            f"the export's vocabulary ({onnx_logits.shape[-1]}) differs from the original's ({ref_logits.shape[-1]})"
        )
    agreement, first = greedy_agreement(ref_tokens, onnx_tokens)
    return PromptParity(
        prompt=prompt,
        input_tokens=len(ids),
        max_abs_diff=float(np.abs(ref_logits - onnx_logits).max()),
        cosine=centred_cosine(ref_logits, onnx_logits),
        top1_match=int(ref_logits.argmax()) == int(onnx_logits.argmax()),
        reference_tokens=tuple(ref_tokens),
        onnx_tokens=tuple(onnx_tokens),
        token_agreement=agreement,
        first_divergence=first,
    )


def _failures(report: dict[str, Any], limits: ParityTolerances) -> tuple[str, ...]:
    failures: list[str] = []
    if limits.max_abs_diff is not None and not report["max_abs_diff"] <= limits.max_abs_diff:
        failures.append(f"max abs logit diff {report['max_abs_diff']:.3g} > {limits.max_abs_diff:g}")
    if not report["min_cosine"] >= limits.min_cosine:
        failures.append(f"logit cosine {report['min_cosine']:.6f} < {limits.min_cosine:g}")
    return tuple(failures)


def check_decoder_parity(
    reference: Path,
    onnx_dir: Path,
    prompts: Sequence[str],
    *,
    precision: str,
    max_new_tokens: int = 16,
) -> ParityReport:
    """Compare the ONNX decoder in ``onnx_dir`` with its PyTorch original at ``reference`` on ``prompts``.

    Args:
        reference: the transformers folder or GGUF file the export was made from.
        onnx_dir: the export (``genai_config.json``, ``model.onnx``).
        prompts: texts to compare on; each is tokenized once and fed to both models.
        precision: the export's precision (``fp32``, ``int8`` or ``int4``), which sets the tolerances.
        max_new_tokens: the length of the greedy continuations compared.

    Raises:
        MissingDependencyError: onnxruntime-genai, torch or transformers is not installed.
        UserError: no prompts, an unknown precision, or a model that cannot be loaded.
    """
    limits = tolerances_for(precision)
    if not prompts:
        raise UserError("the parity check needs at least one prompt")
    if not (onnx_dir / "genai_config.json").is_file():
        raise UserError(f"{onnx_dir} is not an onnxruntime-genai export: it has no genai_config.json")
    genai = import_genai()
    model, tokenizer = load_torch_decoder(reference)
    exported = _load_onnx(genai, onnx_dir)
    items = tuple(
        _compare(prompt, _input_ids(tokenizer, prompt), model, exported, genai, max_new_tokens) for prompt in prompts
    )
    positions = sum(max(len(item.reference_tokens), len(item.onnx_tokens)) for item in items)
    agreeing = sum(item.token_agreement * max(len(item.reference_tokens), len(item.onnx_tokens)) for item in items)
    divergences = [item.first_divergence for item in items if item.first_divergence is not None]
    figures: dict[str, Any] = {
        "max_abs_diff": max(item.max_abs_diff for item in items),
        "min_cosine": min(item.cosine for item in items),
        "mean_cosine": float(np.mean([item.cosine for item in items])),
        "top1_agreement": sum(item.top1_match for item in items) / len(items),
        "token_agreement": agreeing / positions if positions else 1.0,
        "first_divergence": min(divergences) if divergences else None,
    }
    failures = _failures(figures, limits)
    report = ParityReport(
        precision=precision,
        prompts=items,
        max_new_tokens=max_new_tokens,
        tolerances=limits,
        passed=not failures,
        failures=failures,
        **figures,
    )
    log.info(
        "decoder parity (%s): max abs diff %.3g, min cosine %.6f, greedy agreement %.2f -> %s",
        precision,
        report.max_abs_diff,
        report.min_cosine,
        report.token_agreement,
        "passed" if report.passed else "; ".join(failures),
    )
    log.debug("decoder parity details: %s", json.dumps(report.to_dict())[:4000])
    return report
