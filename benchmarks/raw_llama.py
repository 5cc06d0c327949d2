"""The hand-written llama-cpp-python loop that the speed benchmarks hold slm-eval against."""

from __future__ import annotations

import time
from pathlib import Path

import llama_cpp


def open_raw(path: Path, threads: int, context_length: int) -> llama_cpp.Llama:
    """The GGUF loaded as a user would, with the same threads and context as the harness."""
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=context_length,
        n_batch=min(512, context_length),
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )


def raw_decode_rate(llm: llama_cpp.Llama, prompt_tokens: list[int], new_tokens: int) -> float:
    """Tokens/s from the first to the last of ``new_tokens`` greedy tokens (``Llama.generate`` + ``detokenize``)."""
    llm.reset()
    times: list[float] = []
    for token in llm.generate(prompt_tokens, temp=0.0, top_k=40, top_p=0.95, repeat_penalty=1.0):
        times.append(time.perf_counter())
        llm.detokenize([token])
        if len(times) == new_tokens:
            break
    return (len(times) - 1) / (times[-1] - times[0])
