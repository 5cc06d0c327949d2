"""SFT tokenization: the prompt formatted as evaluation sends it, loss on the response and EOS only; padding."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from slm_eval.errors import UserError
from slm_eval.training.sft_data import IGNORE_INDEX, PaddingCollator, build_sft_examples, prompt_text
from tests.tiny_models import tiny_tokenizer

RECORDS = [
    {"id": "a", "prompt": "what is a visa", "response": "A visa is a travel document."},
    {"id": "b", "prompt": "who checks the passport", "response": "The officer."},
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny_tokenizer()


def split(feature: dict[str, list[int]]) -> tuple[list[int], list[int]]:
    """The ids under -100 labels (the prompt) and the labelled ids (the response and EOS)."""
    prompt = [token for token, label in zip(feature["input_ids"], feature["labels"], strict=True) if label < 0]
    answer = [label for label in feature["labels"] if label >= 0]
    return prompt, answer


def test_chat_prompts_are_masked_and_the_response_and_eos_carry_the_loss(tokenizer: Any) -> None:
    examples = build_sft_examples(RECORDS, tokenizer, max_length=256, chat=None)
    assert examples.chat
    feature = examples.features[0]
    prompt, answer = split(feature)
    assert feature["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)  # the prompt comes first
    expected_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "what is a visa"}], add_generation_prompt=True, tokenize=False
    )
    assert tokenizer.decode(prompt) == expected_prompt
    assert answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(answer[:-1]) == "A visa is a travel document."
    assert feature["input_ids"][len(prompt) :] == answer


def test_plain_prompts_are_the_prompt_a_newline_and_the_response(tokenizer: Any) -> None:
    examples = build_sft_examples(RECORDS, tokenizer, max_length=256, chat=False)
    assert not examples.chat
    prompt, answer = split(examples.features[1])
    assert tokenizer.decode(prompt, skip_special_tokens=True) == "who checks the passport\n"
    assert tokenizer.decode(answer, skip_special_tokens=True) == "The officer."
    assert answer[-1] == tokenizer.eos_token_id


def test_asking_for_chat_without_a_template_falls_back_to_plain(
    tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bare = tiny_tokenizer()
    bare.chat_template = None
    with caplog.at_level(logging.WARNING):
        examples = build_sft_examples(RECORDS, bare, max_length=256, chat=True)
    assert not examples.chat
    assert "no chat template" in caplog.text
    assert prompt_text(bare, "hi", False) == "hi\n"


def test_long_examples_are_cut_and_prompts_filling_the_window_left_out(tokenizer: Any) -> None:
    prompt_length = len(split(build_sft_examples(RECORDS[:1], tokenizer, max_length=256, chat=None).features[0])[0])
    cut = build_sft_examples(RECORDS[:1], tokenizer, max_length=prompt_length + 2, chat=None)
    assert cut.truncated == 1
    assert len(cut.features[0]["input_ids"]) == prompt_length + 2
    assert len(split(cut.features[0])[1]) == 2
    with pytest.raises(UserError, match="raise --max-length"):
        build_sft_examples(RECORDS[:1], tokenizer, max_length=prompt_length, chat=None)


def test_a_record_without_a_response_is_named(tokenizer: Any) -> None:
    with pytest.raises(UserError, match="record z"):
        build_sft_examples([{"id": "z", "prompt": "p", "response": " "}], tokenizer, max_length=64, chat=None)


def test_the_collator_pads_ids_masks_and_labels_and_stacks_scalars() -> None:
    collate = PaddingCollator(pad_id=7)
    batch = collate(
        [
            {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
            {"input_ids": [4], "labels": [4]},
        ]
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 7, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    qa = collate(
        [
            {"input_ids": [1, 2], "start_positions": 1, "end_positions": 1},
            {"input_ids": [3], "start_positions": 0, "end_positions": 0},
        ]
    )
    assert qa["start_positions"].tolist() == [1, 0]
    assert qa["input_ids"].tolist() == [[1, 2], [3, 7]]


@pytest.mark.slow
def test_smollm2_prompts_match_what_the_transformers_backend_sends(smollm2_gguf: Path) -> None:
    """The real SmolLM2 tokenizer (from its GGUF): the masked prompt is the backend's formatted prompt."""
    from slm_eval.training.engine_models import load_tokenizer, locate_base_model

    real = load_tokenizer(locate_base_model(str(smollm2_gguf)))
    feature = build_sft_examples(RECORDS[:1], real, max_length=256, chat=None).features[0]
    prompt, answer = split(feature)
    assert real.decode(prompt).endswith("<|im_start|>user\nwhat is a visa<|im_end|>\n<|im_start|>assistant\n")
    assert prompt == real(prompt_text(real, "what is a visa", True), add_special_tokens=False)["input_ids"]
    assert real.decode(answer) == "A visa is a travel document.<|im_end|>"
