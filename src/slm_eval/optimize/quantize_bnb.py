"""bitsandbytes NF4 / LLM.int8 through transformers' ``BitsAndBytesConfig``, on a CUDA GPU.

The runner is :func:`slm_eval.optimize.quantize_torch.quantize_bitsandbytes`, which refuses on a machine
without CUDA (naming the CPU alternative) before anything here runs. This module holds the GPU-only step: the
float32 model goes through ``from_pretrained(quantization_config=...)`` and is saved with transformers' own
bitsandbytes serialization (``model.safetensors``, ``quantization_config`` in ``config.json``), which
transformers loads back natively on CUDA. Not exercised on a CUDA machine by this project's tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slm_eval.backends.transformers_quantized import QuantizationRecipe, write_recipe
from slm_eval.errors import UserError, first_line
from slm_eval.optimize.quantize_methods import QuantizeJob


def quantize_and_save(
    model: Any, auto_class: Any, job: QuantizeJob, names: Sequence[str], recipe: QuantizationRecipe
) -> Any:
    """Quantize with bitsandbytes through transformers on the GPU and save it with transformers' serialization.

    The float32 model (with its seeded head, for an encoder) is saved to a scratch folder first, so
    ``from_pretrained`` quantizes exactly these weights; the layers outside the body stay float32.
    """
    import tempfile

    import torch
    import transformers

    body = set(names)
    skip = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and name not in body]
    if job.bits == 4:
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        config = transformers.BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            llm_int8_skip_modules=skip or None,
        )
    else:
        config = transformers.BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_8bit=True, llm_int8_skip_modules=skip or None
        )
    job.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=job.cache_dir, prefix="bnb-") as scratch:
        model.save_pretrained(scratch)
        try:
            quantized = auto_class.from_pretrained(
                scratch,
                quantization_config=config,
                dtype=torch.float32,
                device_map={"": torch.cuda.current_device()},
                local_files_only=True,
                use_safetensors=True,
            )
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise UserError(f"bitsandbytes could not quantize {job.card.name} ({first_line(exc)})") from exc
    quantized.save_pretrained(str(job.output_dir))  # config.json now holds the quantization_config
    write_recipe(job.output_dir, recipe)
    return quantized.eval()
