"""Supervised fine-tuning examples for decoders: prompt and response tokens, with the loss on the response only.

Container-safe: imports only the standard library, :mod:`slm_eval.errors` and (inside the collator) torch.

The prompt is formatted exactly as evaluation sends it to the model: through the tokenizer's chat template
(one user turn, then the assistant's turn opened) when the tokenizer has one and ``chat`` is not false,
else as plain text followed by a newline. The response follows, then the end-of-sequence token, so the
model learns to stop. Prompt tokens are labelled ``-100`` (no loss); response tokens and the EOS carry
their own ids as labels (the model shifts them by one itself).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slm_eval.errors import UserError

log = logging.getLogger("slm_eval.training.sft_data")
IGNORE_INDEX = -100
SFT_FIELDS = ("id", "prompt", "response")
# Per-token sequences the collator pads; anything else is stacked as it is (a scalar label, a position).
_SEQUENCE_PADDING = {"labels": IGNORE_INDEX, "attention_mask": 0, "token_type_ids": 0}


@dataclass(frozen=True)
class SftExamples:
    """Tokenized SFT examples.

    Attributes:
        features: one dict per example with ``input_ids`` and ``labels`` (lists of ints, equal length).
        chat: whether the prompts went through the chat template.
        truncated: examples cut at ``max_length`` (part of their response, or its EOS, lost).
        dropped: examples whose prompt alone filled ``max_length`` (nothing left to learn from), left out.
    """

    features: list[dict[str, list[int]]]
    chat: bool
    truncated: int
    dropped: int


def uses_chat(tokenizer: Any, chat: bool | None) -> bool:
    """Whether prompts go through the chat template: asked for (or not refused) and the tokenizer has one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat and not has_template:
        log.warning("the tokenizer has no chat template: training on plain prompt + newline + response")
    return has_template and chat is not False


def prompt_text(tokenizer: Any, prompt: str, chat: bool) -> str:
    """The prompt as the model sees it at evaluation: the chat template with the assistant turn opened, or plain."""
    if not chat:
        return prompt + "\n"
    messages = [{"role": "user", "content": prompt}]
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def eos_id(tokenizer: Any) -> int:
    """The tokenizer's end-of-sequence id.

    Raises:
        UserError: the tokenizer declares none.
    """
    value = getattr(tokenizer, "eos_token_id", None)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        raise UserError("the tokenizer has no end-of-sequence token: SFT needs one to teach the model to stop")
    return int(value)


def tokenize_example(tokenizer: Any, prompt: str, response: str, chat: bool) -> tuple[list[int], list[int]]:
    """The ids of one prompt and of its response followed by EOS, tokenized apart as they are at generation."""
    # A chat template writes its own special tokens (BOS included); a plain prompt gets the tokenizer's.
    prompt_ids = tokenizer(prompt_text(tokenizer, prompt, chat), add_special_tokens=not chat)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return [int(token) for token in prompt_ids], [*(int(token) for token in response_ids), eos_id(tokenizer)]


def build_sft_examples(
    records: Sequence[Mapping[str, Any]], tokenizer: Any, *, max_length: int, chat: bool | None
) -> SftExamples:
    """Tokenize ``{"id", "prompt", "response"}`` records, labelling the prompt ``-100``.

    Raises:
        UserError: a record's prompt or response is not a string or is empty, or every prompt fills
            ``max_length`` (the message says to raise ``--max-length``).
    """
    use_chat = uses_chat(tokenizer, chat)
    features: list[dict[str, list[int]]] = []
    truncated = dropped = 0
    for record in records:
        prompt, response = record.get("prompt"), record.get("response")
        if not isinstance(prompt, str) or not isinstance(response, str) or not response.strip():
            raise UserError(
                f"record {record.get('id', '?')!s}: 'prompt' and 'response' must be text and the response "
                "not empty; fix or re-prepare the dataset"
            )
        prompt_ids, response_ids = tokenize_example(tokenizer, prompt, response, use_chat)
        if len(prompt_ids) >= max_length:
            dropped += 1
            continue
        ids = prompt_ids + response_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        features.append({"input_ids": ids, "labels": labels})
    if not features:
        raise UserError(
            f"every prompt is {max_length} tokens or longer, leaving no room for its response: raise --max-length"
        )
    if dropped or truncated:
        log.warning(
            "max length %d: %d example(s) left out (prompt too long), %d cut short", max_length, dropped, truncated
        )
    return SftExamples(features=features, chat=use_chat, truncated=truncated, dropped=dropped)


class PaddingCollator:
    """Pads a batch of token features to its longest one and stacks it into tensors.

    ``input_ids`` are padded with ``pad_id``, ``labels`` lists with ``-100`` (no loss), ``attention_mask``
    (built from the lengths when absent) and ``token_type_ids`` with 0, on the right. Scalar fields (a QA
    start or end position, a class label) are stacked as they are.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if not features:
            raise ValueError("an empty batch")
        longest = max(len(feature["input_ids"]) for feature in features)
        batch: dict[str, Any] = {}
        names = list(features[0])
        if "attention_mask" not in names:
            names.append("attention_mask")
        for name in names:
            values: list[Any] = [feature.get(name) for feature in features]
            if name == "attention_mask" and values[0] is None:
                values = [[1] * len(feature["input_ids"]) for feature in features]
            if isinstance(values[0], list):
                fill = self.pad_id if name == "input_ids" else _SEQUENCE_PADDING.get(name, 0)
                padded = [list(value) + [fill] * (longest - len(value)) for value in values]
                batch[name] = torch.tensor(padded, dtype=torch.long)
            else:
                batch[name] = torch.tensor(values, dtype=torch.long)
        return batch


def pad_id(tokenizer: Any) -> int:
    """The id padding uses: the tokenizer's pad token, else its EOS (masked out by the attention mask anyway)."""
    value = getattr(tokenizer, "pad_token_id", None)
    return int(value) if value is not None else eos_id(tokenizer)
