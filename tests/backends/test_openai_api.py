"""The openai_api backend: on llama-cpp-python's real server with the bundled SmolLM2, and on fake servers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from slm_eval.backends import openai_api
from slm_eval.backends.base import Generation, GenerationRequest, LoadOptions
from slm_eval.backends.catalogue import BACKENDS, choose_backend
from slm_eval.backends.openai_api import OpenAIAPIBackend, RetryPolicy
from slm_eval.errors import UserError
from slm_eval.evaluation.summary import HostPerformanceSource
from slm_eval.models.catalogue import default_registry
from slm_eval.models.registry import ModelCard
from slm_eval.models.sources import ApiEndpoint
from tests.backends.api_servers import (
    Reply,
    TickingClock,
    chunk,
    fake_server,
    free_port,
    sse,
    throttling_proxy,
)
from tests.conftest import RunCli

PROMPT = "What is a visa?"
SECRET = "sk-slm-eval-leak-check-6f1d2c9e8b7a"
USAGE = {"prompt_tokens": 31, "completion_tokens": 3}
ANSWER = sse(chunk("A"), chunk(" visa"), chunk(" is"), chunk(None, "stop"), chunk(usage=USAGE))


class Sleeps(list[float]):
    """Records the waits a retry policy asks for, without sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _policy(sleeps: Sleeps, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_s=0.5, max_s=30.0, sleep=sleeps, jitter=lambda: 0.0)


def _card(base_url: str, model: str = "m", key_env: str = "XAI_API_KEY") -> ModelCard:
    return ModelCard(
        name="grok-like",
        display_name="Grok-like",
        kind="api",
        architecture="not published",
        parameters=None,
        context_length=None,
        licence="test",
        backends=("openai_api",),
        source=ApiEndpoint(base_url=base_url, model=model, key_env=key_env),
    )


def _load(base_url: str, sleeps: Sleeps | None = None, key: str | None = SECRET, **card: str) -> OpenAIAPIBackend:
    """The backend on a scripted server, without the load-time network probe (its own tests are elsewhere)."""
    environ = {"XAI_API_KEY": key} if key else {}
    options = LoadOptions(clock=TickingClock())
    policy = _policy(Sleeps() if sleeps is None else sleeps)
    return openai_api.load(_card(base_url, **card), None, options, retry=policy, environ=environ, network_probes=0)


def _fail(backend: OpenAIAPIBackend, max_new_tokens: int = 8) -> str:
    with pytest.raises(UserError) as info:
        backend.generate([GenerationRequest(PROMPT, max_new_tokens=max_new_tokens)])
    message = str(info.value)
    assert "\n" not in message
    assert SECRET not in message and SECRET not in repr(info.value)
    return message


# --- the real server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def visa_answer(real: OpenAIAPIBackend) -> tuple[Generation, list[str]]:
    pieces: list[str] = []
    (generation,) = real.generate([GenerationRequest(PROMPT, max_new_tokens=16)], lambda i, piece: pieces.append(piece))
    return generation, pieces


@pytest.fixture
def _fixed_host_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HostPerformanceSource, "measure", classmethod(lambda cls: cls(20.0, 100.0)))


@pytest.mark.integration
def test_real_server_streams_with_timing(real: OpenAIAPIBackend, visa_answer: tuple[Generation, list[str]]) -> None:
    generation, pieces = visa_answer
    assert real.model.endswith(".gguf")  # discovered from /v1/models
    assert "visa" in generation.text.lower()
    assert len(pieces) > 1 and "".join(pieces) == generation.text
    ttft = generation.time_to_first_token_s
    assert ttft is not None and ttft > 0
    assert list(generation.token_times) == sorted(generation.token_times)
    assert generation.started_at < generation.token_times[0] <= generation.token_times[-1] <= generation.finished_at
    assert generation.output_tokens == len(generation.token_times) == 16  # counted from the stream
    assert generation.finish_reason == "length"
    assert real.capabilities.token_counts == "reported" and not real.capabilities.local


@pytest.mark.integration
def test_real_server_max_tokens_and_stop(real: OpenAIAPIBackend, visa_answer: tuple[Generation, list[str]]) -> None:
    full = visa_answer[0].text
    (short,) = real.generate([GenerationRequest(PROMPT, max_new_tokens=3)])
    assert short.output_tokens == 3 and full.startswith(short.text)
    stop = " " + full.split(" ")[4]
    (stopped,) = real.generate([GenerationRequest(PROMPT, max_new_tokens=16, stop=(stop,))])
    assert stopped.text == full[: full.index(stop)]
    assert stopped.finish_reason == "stop"
    assert stopped.output_tokens < 16


@pytest.mark.integration
def test_real_server_with_a_model_id(server: str) -> None:
    backend = openai_api.load(default_registry().resolve(f"{server}#smollm2"), None, LoadOptions(), environ={})
    try:
        assert backend.model == "smollm2"
        (generation,) = backend.generate([GenerationRequest(PROMPT, max_new_tokens=4)])
        assert generation.output_tokens == 4
    finally:
        backend.close()


@pytest.mark.integration
def test_a_429_from_a_proxy_is_retried(server: str) -> None:
    sleeps = Sleeps()
    with throttling_proxy(server) as (proxy_url, seen):
        backend = _load(proxy_url, sleeps, model="smollm2")
        (generation,) = backend.generate([GenerationRequest(PROMPT, max_new_tokens=4)])
    assert sleeps == [0.0]  # Retry-After: 0 honoured, nothing slept
    assert [request.path for request in seen] == ["/v1/chat/completions"] * 2
    assert generation.output_tokens == 4 and generation.text.strip()


@pytest.mark.integration
def test_cli_quick_test_through_the_server(run_cli: RunCli, server: str) -> None:
    result = run_cli("quick-test", "--model", server, "--input", PROMPT, "--max-new-tokens", "8", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["backend"] == "openai_api"
    (answer,) = data["results"]
    assert answer["output"].strip()
    assert 1 <= answer["output_tokens"] <= 8
    assert answer["time_to_first_token"]["label"] == "measured"
    assert answer["time_to_first_token"]["value"] > 0
    # The model's memory is the server's, not this process's: no figure rather than a wrong one.
    assert answer["remote"] is True
    assert answer["peak_memory"]["value"] is None
    assert data["peak_memory"]["value"] is None


@pytest.mark.integration
@pytest.mark.usefixtures("_fixed_host_capacity")
def test_cli_evaluate_through_the_server_keeps_the_key_out(
    run_cli: RunCli, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # sent to a server that ignores it; must be written nowhere
    result = run_cli(
        "evaluate", "--model", server, "--limit", "2", "--max-new-tokens", "8", "--metrics", "accuracy", "latency",
        "--json", "--debug",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["model"]["backend"] == "openai_api"
    assert set(summary["metrics"]) >= {"accuracy", "latency"}
    assert not {"memory", "power"} & set(summary["metrics"])
    assert summary["metrics"]["accuracy"]["f1"]["n"] == 2
    assert summary["metrics"]["latency"]["end_to_end"]["min"] > 0
    assert SECRET not in result.out + result.err
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "records.jsonl" for path in written)
    assert any(path.suffix == ".log" for path in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


# --- fake servers: the protocol and every failure ----------------------------------------------------


def test_request_body_headers_and_reported_usage() -> None:
    with fake_server(Reply(body=ANSWER)) as (url, seen):
        backend = _load(url)
        (generation,) = backend.generate([GenerationRequest(PROMPT, max_new_tokens=5, stop=("\n", "."))])
    (request,) = seen
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    body: dict[str, Any] = request.body
    assert body["model"] == "m" and body["messages"] == [{"role": "user", "content": PROMPT}]
    assert body["max_tokens"] == 5 and body["temperature"] == 0.0 and body["stop"] == ["\n", "."]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert generation.text == "A visa is"
    assert (generation.prompt_tokens, generation.output_tokens) == (31, 3)  # from usage, not the chunk count
    # Read from the clock: started 1, request sent 2, headers 3, then one token per tick.
    assert generation.token_times == (4.0, 5.0, 6.0) and generation.started_at == 1.0
    assert generation.network_s == 1.0
    assert generation.finish_reason == "stop"


def test_500_is_retried_with_backoff_then_succeeds() -> None:
    sleeps = Sleeps()
    with fake_server(Reply(500, b"boom", "text/plain"), Reply(503, b"busy", "text/plain"), Reply(body=ANSWER)) as (
        url,
        seen,
    ):
        (generation,) = _load(url, sleeps).generate([GenerationRequest(PROMPT)])
    assert generation.text == "A visa is"
    assert len(seen) == 3
    assert sleeps == [0.25, 0.5]  # exponential, jitter at its lowest (half the backoff)


def test_retry_after_is_honoured_and_attempts_are_bounded() -> None:
    sleeps = Sleeps()
    throttled = Reply(429, b'{"error": {"message": "rate limited"}}', "application/json", {"Retry-After": "7"})
    with fake_server(*[throttled] * 5) as (url, seen):
        message = _fail(_load(url, sleeps))
    assert len(seen) == 4
    assert sleeps == [7.0, 7.0, 7.0]
    assert "429" in message and "4 attempts" in message


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=5.0, sleep=Sleeps(), jitter=lambda: 0.999999)
    assert [round(policy.delay(attempt, None), 3) for attempt in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.delay(1, "120") == 5.0  # capped
    assert policy.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert 0.5 <= RetryPolicy(base_s=1.0).delay(1, "soon") <= 1.0  # unreadable: back off as usual


def test_401_names_the_variable_but_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}"}}).encode()
    with fake_server(Reply(401, echo, "application/json")) as (url, seen):
        backend = _load(url)
        message = _fail(backend)
    assert len(seen) == 1  # not retried
    assert message.startswith("the API rejected the key in $XAI_API_KEY")
    assert SECRET not in repr(backend) and SECRET not in caplog.text


def test_403_without_a_key_on_a_local_server() -> None:
    with fake_server(Reply(403, b"{}", "application/json")) as (url, seen):
        message = _fail(_load(url, key=None))
    assert "needs a key" in message and "$XAI_API_KEY" in message
    assert "Authorization" not in seen[0].headers


def test_a_remote_catalogue_model_needs_its_key() -> None:
    card = default_registry().resolve("grok-3-mini-fast")
    with pytest.raises(UserError, match=r"needs an API key: set \$XAI_API_KEY"):
        openai_api.load(card, None, LoadOptions(), environ={})


def test_other_4xx_quotes_the_server_without_the_key() -> None:
    body = json.dumps({"error": {"message": f"model 'm' not found for {SECRET}"}}).encode()
    with fake_server(Reply(404, body, "application/json")) as (url, _seen):
        message = _fail(_load(url))
    assert "HTTP 404" in message and "model 'm' not found" in message and "[redacted]" in message


def test_malformed_json_in_the_stream() -> None:
    with fake_server(Reply(body=sse(chunk("A"), '{"choices": [oops'))) as (url, _seen):
        message = _fail(_load(url))
    assert "malformed JSON" in message


def test_an_error_event_mid_stream() -> None:
    with fake_server(Reply(body=sse(chunk("A"), {"error": {"message": "overloaded"}}))) as (url, _seen):
        message = _fail(_load(url))
    assert "error mid-stream" in message and "overloaded" in message


@pytest.mark.parametrize("cut", ["clean close", "connection dropped"])
def test_a_stream_closed_before_done(cut: str) -> None:
    body = sse(chunk("A"), chunk(" visa"), done=False)
    reply = Reply(body=body, declared_length=len(body) + 500 if cut == "connection dropped" else None)
    with fake_server(reply) as (url, _seen):
        message = _fail(_load(url))
    assert "closed the stream before [DONE] after 2 tokens" in message


def test_connection_refused() -> None:
    message = _fail(_load(f"http://127.0.0.1:{free_port()}/v1"))
    assert "cannot connect" in message and "is running" in message


def test_a_server_without_models_asks_for_a_model_id() -> None:
    no_models = Reply(body=b'{"data": []}', content_type="application/json")
    with fake_server(no_models) as (url, seen), pytest.raises(UserError, match="#<model-id>"):
        _load(url, model="")
    assert seen[0].path == "/v1/models"


def test_empty_prompt_and_closed_backend() -> None:
    backend = _load("http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="empty prompt"):
        backend.generate([GenerationRequest("  ")])
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.generate([GenerationRequest(PROMPT)])


def test_an_injected_client_is_used_and_left_open() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=ANSWER)))
    options = LoadOptions(clock=TickingClock())
    card = _card("https://api.example.test/v1")
    backend = openai_api.load(card, None, options, client=client, environ={"XAI_API_KEY": SECRET})
    (generation,) = backend.generate([GenerationRequest(PROMPT)])
    backend.close()
    assert generation.text == "A visa is" and not client.is_closed
    client.close()


def test_cli_401_is_one_line_without_the_key(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with fake_server(*[Reply(401, json.dumps({"error": SECRET}).encode(), "application/json")] * 2) as (url, _seen):
        result = run_cli("quick-test", "--model", f"{url}#m", "--input", PROMPT, "--json")
        debug = run_cli("quick-test", "--model", f"{url}#m", "--input", PROMPT, "--debug")
    line = result.error_line()
    assert "rejected the key in $OPENAI_API_KEY" in line
    assert "Traceback" in debug.err  # the traceback is shown, the key is not
    assert SECRET not in result.out + result.err + debug.out + debug.err
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert SECRET.encode() not in path.read_bytes(), path


def test_catalogue_entry() -> None:
    entry = BACKENDS["openai_api"]
    assert (entry.requires, entry.extra, entry.needs_weights) == (("httpx",), "api", False)
    assert choose_backend(default_registry().resolve("grok"), None) is entry
    assert choose_backend(default_registry().resolve("http://127.0.0.1:8080/v1#x"), None) is entry
