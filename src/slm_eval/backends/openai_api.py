"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint over HTTP: xAI's Grok, or a local server.

Answers are streamed (server-sent events), so time to first token is the real network round trip plus
the server's prompt processing. Token counts come from the server's ``usage`` when it reports them
(``stream_options.include_usage``); otherwise each streamed chunk with text counts as one token, which is
why :class:`Capabilities` says ``token_counts="reported"``. Requests answered 429 or 5xx are retried with
exponential backoff and jitter, honouring ``Retry-After``. The API key is read from the environment
variable the model card names and is never written into a message, a log line or a repr.

The network is measured apart from the answer, so a remote figure is never mistaken for an on-device one:

- at load, :meth:`OpenAIAPIBackend.measure_round_trip` sends a few ``HEAD {base_url}/models`` requests
  (no body, no model work; any HTTP status counts, since only the round trip matters) and keeps the median
  time from writing the request to reading the response headers, connection set-up excluded when the
  transport reports it: :attr:`OpenAIAPIBackend.network_rtt_s`. A probe that fails records ``None``;
  it never fails the load.
- per request, :attr:`Generation.network_s` is the time from sending the request that succeeded to
  receiving its response headers: opening the connection (TCP, TLS) when none is kept alive, uploading the
  request, and whatever the server does before it sends headers (queueing, authentication; some servers
  also wait for the first token). Failed attempts and retry waits are in the end-to-end time only.

Example:
    slm-eval quick-test --model http://127.0.0.1:8080/v1#smollm2 --input "What is a visa?"
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from slm_eval.backends.base import (
    Capabilities,
    FinishReason,
    Generation,
    GenerationRequest,
    LoadOptions,
    TokenCallback,
)
from slm_eval.backends.streaming import StopStringStream
from slm_eval.errors import UserError
from slm_eval.logs import get_logger
from slm_eval.metrics.timing import Clock
from slm_eval.models.registry import ModelCard
from slm_eval.models.sources import ApiEndpoint

log = get_logger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Round trips sent at load to measure the network (their median is kept), and how long each may take.
NETWORK_PROBES = 3
PROBE_TIMEOUT_S = 5.0
# OpenAI accepts at most four stop strings; every one is also applied here, on the streamed text.
MAX_SERVER_STOPS = 4
REDACTED = "[redacted]"


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before asking again after a 429 or a 5xx.

    Attributes:
        attempts: the most requests sent for one prompt, the first included.
        base_s: the backoff before the second attempt; it doubles with each further attempt.
        max_s: the longest single wait, ``Retry-After`` included.
        sleep: waits the given seconds (injected so tests never sleep).
        jitter: a number in [0, 1) that scales the backoff between half and all of it.
    """

    attempts: int = 4
    base_s: float = 0.5
    max_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        told = _parse_retry_after(retry_after)
        if told is not None:
            return min(self.max_s, told)
        backoff = min(self.max_s, self.base_s * 2.0 ** (attempt - 1))
        return backoff * (0.5 + self.jitter() / 2)


@dataclass(frozen=True)
class ApiTimeouts:
    """Seconds to wait for the connection, for each piece of the answer, and for sending the request."""

    connect_s: float = 10.0
    read_s: float = 120.0
    write_s: float = 30.0

    def to_httpx(self) -> httpx.Timeout:
        """The same limits as :class:`httpx.Timeout`."""
        return httpx.Timeout(connect=self.connect_s, read=self.read_s, write=self.write_s, pool=self.connect_s)


@dataclass
class _Stream:
    """What one streamed answer has delivered so far."""

    token_times: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    done: bool = False


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds, or an HTTP date."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class OpenAIAPIBackend:
    """A model behind an OpenAI-compatible chat-completions endpoint."""

    name = "openai_api"
    capabilities = Capabilities(generate=True, streaming=True, chat_template=True, local=False, token_counts="reported")
    parameter_count: int | None = None

    def __init__(
        self,
        endpoint: ApiEndpoint,
        client: httpx.Client,
        *,
        api_key: str | None,
        clock: Clock,
        seed: int | None = 0,
        retry: RetryPolicy | None = None,
        owns_client: bool = True,
    ) -> None:
        self._base_url = endpoint.base_url.rstrip("/")
        self._model = endpoint.model
        self._key_env = endpoint.key_env
        self._key = api_key or None
        self._client: httpx.Client | None = client
        self._clock = clock
        self._seed = seed
        self._retry = retry or RetryPolicy()
        self._owns_client = owns_client
        self._network_rtt_s: float | None = None
        self._headers_s: float | None = None  # send -> response headers of the last successful request

    def __repr__(self) -> str:
        return f"OpenAIAPIBackend(base_url={self._base_url!r}, model={self._model!r}, key_env={self._key_env!r})"

    @property
    def model(self) -> str:
        """The model id sent with each request."""
        return self._model

    @property
    def network_rtt_s(self) -> float | None:
        """The median network round trip to the endpoint measured at load, in seconds; ``None`` if unmeasured."""
        return self._network_rtt_s

    def measure_round_trip(self, samples: int = NETWORK_PROBES) -> float | None:
        """Time ``samples`` light ``HEAD {base_url}/models`` exchanges and keep their median (seconds).

        Each sample runs from writing the request headers to reading the response headers, so a connection
        opened for it (TCP, TLS) is left out when the transport reports its steps (httpx's ``trace``);
        otherwise the whole exchange is timed. Any HTTP status counts: the server answered, which is all a
        round trip needs. Failures are logged and skipped; with no sample left the result is ``None``.
        """
        times = [seconds for seconds in (self._probe_once() for _ in range(max(0, samples))) if seconds is not None]
        self._network_rtt_s = statistics.median(times) if times else None
        log.debug("openai_api: round trip to %s: %s s (%d samples)", self._base_url, self._network_rtt_s, len(times))
        return self._network_rtt_s

    def _probe_once(self) -> float | None:
        if self._client is None:
            return None
        marks: dict[str, float] = {}

        def trace(event: str, info: Mapping[str, Any]) -> None:
            if event.endswith(".send_request_headers.started"):
                marks.setdefault("sent", self._clock.now())
            elif event.endswith(".receive_response_headers.complete"):
                marks["headers"] = self._clock.now()

        url = self._base_url + "/models"
        extensions = {"trace": trace}
        request = self._client.build_request(
            "HEAD", url, headers=self._headers(), timeout=PROBE_TIMEOUT_S, extensions=extensions
        )
        started = self._clock.now()
        try:
            self._client.send(request).close()
        except httpx.HTTPError as exc:
            log.debug("openai_api: network probe of %s failed: %s", self._base_url, type(exc).__name__)
            return None
        finished = self._clock.now()
        if "sent" in marks and "headers" in marks:
            return marks["headers"] - marks["sent"]
        return finished - started

    def discover_model(self) -> str:
        """Ask the server for its models (``GET /models``) and use the first one.

        Raises:
            UserError: the server cannot be reached, refuses, or lists no model.
        """
        response = self._send("GET", "/models", None)
        try:
            data = json.loads(response.read())
            self._model = str(data["data"][0]["id"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as exc:
            raise UserError(
                f"the API at {self._base_url}/models did not list a model; name one as {self._base_url}#<model-id>"
            ) from exc
        finally:
            response.close()
        return self._model

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Generation]:
        return [self._generate_one(index, request, on_token) for index, request in enumerate(requests)]

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
        self._client = None

    # --- one request -----------------------------------------------------------------------------------

    def _generate_one(self, index: int, request: GenerationRequest, on_token: TokenCallback | None) -> Generation:
        if not request.prompt.strip():
            raise UserError("empty prompt: give some text to answer")
        messages = [{"role": "user", "content": request.prompt}]
        if request.system is not None:
            messages.insert(0, {"role": "system", "content": request.system})
        body: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            body["stop"] = list(request.stop[:MAX_SERVER_STOPS])
        if self._seed is not None:
            body["seed"] = self._seed
        stream = StopStringStream(request.stop, None if on_token is None else lambda piece: on_token(index, piece))
        state = _Stream()
        started = self._clock.now()
        response = self._send("POST", "/chat/completions", body)
        try:
            for chunk in self._events(response, state):
                if self._take(chunk, state, stream):
                    break
        except httpx.TimeoutException as exc:
            raise UserError(
                f"the API at {self._base_url} stopped sending its answer for longer than the read timeout "
                f"after {len(state.token_times)} tokens; retry, or raise the timeout"
            ) from exc
        except httpx.TransportError as exc:
            log.debug("stream from %s broke: %s", self._base_url, type(exc).__name__)
        finally:
            response.close()
        if not state.done and not stream.stopped:
            raise UserError(
                f"the API at {self._base_url} closed the stream before [DONE] after {len(state.token_times)} "
                "tokens; the partial answer was not kept: check the server's log and retry"
            )
        text = stream.finish()
        finished = self._clock.now()
        return Generation(
            text=text,
            prompt_tokens=self._usage_count(state, "prompt_tokens", 0),
            output_tokens=self._usage_count(state, "completion_tokens", len(state.token_times)),
            started_at=started,
            token_times=tuple(state.token_times),
            finished_at=finished,
            finish_reason=self._finish_reason(state, stream, request),
            prompt_text=request.prompt if request.system is None else f"{request.system}\n\n{request.prompt}",
            network_s=self._headers_s,
        )

    def _take(self, chunk: Mapping[str, Any], state: _Stream, stream: StopStringStream) -> bool:
        """Fold one streamed chunk into ``state``; ``True`` when the answer is complete."""
        if chunk.get("error") is not None:
            raise UserError(f"the API at {self._base_url} reported an error mid-stream: {self._detail(chunk)}")
        if isinstance(chunk.get("usage"), Mapping):
            state.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return False
        choice = choices[0]
        delta = choice.get("delta")
        piece = delta.get("content") if isinstance(delta, Mapping) else None
        if isinstance(piece, str) and piece:
            state.token_times.append(self._clock.now())
            if stream.push(piece):
                return True
        if choice.get("finish_reason"):
            state.finish_reason = str(choice["finish_reason"])
        return False

    def _events(self, response: httpx.Response, state: _Stream) -> Iterator[Mapping[str, Any]]:
        """The JSON payloads of a server-sent event stream; marks ``state.done`` at ``data: [DONE]``."""
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, ": ping" comments, event: and id: fields
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                state.done = True
                return
            try:
                chunk = json.loads(payload)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"the API at {self._base_url} sent malformed JSON in its stream "
                    f"({self._redact(payload[:60])!r}); check that the URL is an OpenAI-compatible endpoint"
                ) from exc
            if not isinstance(chunk, Mapping):
                raise UserError(f"the API at {self._base_url} sent a stream event that is not a JSON object")
            yield chunk

    def _usage_count(self, state: _Stream, key: str, fallback: int) -> int:
        value = state.usage.get(key) if state.usage is not None else None
        return int(value) if isinstance(value, int) and value >= 0 else fallback

    @staticmethod
    def _finish_reason(state: _Stream, stream: StopStringStream, request: GenerationRequest) -> FinishReason:
        if stream.stopped or state.finish_reason == "stop":
            return "stop"
        if state.finish_reason == "length" or len(state.token_times) >= request.max_new_tokens:
            return "length"
        return "stop"

    # --- HTTP with retries -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None) -> httpx.Response:
        """Send one request, retrying 429 and 5xx; returns an open response with a 2xx status.

        Raises:
            UserError: the server is unreachable, rejects the key, or keeps failing.
        """
        if self._client is None:
            raise RuntimeError("the openai_api backend was closed")
        url = self._base_url + path
        policy = self._retry
        self._headers_s = None
        for attempt in range(1, policy.attempts + 1):
            request = self._client.build_request(method, url, json=body, headers=self._headers())
            sent = self._clock.now()
            try:
                response = self._client.send(request, stream=True)  # returns once the headers are read
            except httpx.ConnectError as exc:
                raise UserError(
                    f"cannot connect to the API at {self._base_url} (connection refused or host unreachable); "
                    "check that the server is running and the URL is right"
                ) from exc
            except httpx.TimeoutException as exc:
                raise UserError(
                    f"the API at {self._base_url} did not answer within the timeout; retry, or check the server"
                ) from exc
            status = response.status_code
            if status < 400:
                self._headers_s = self._clock.now() - sent
                return response
            response.read()
            response.close()
            retryable = status == 429 or status >= 500
            if retryable and attempt < policy.attempts:
                wait = policy.delay(attempt, response.headers.get("Retry-After"))
                log.warning(
                    "HTTP %d from %s; retrying in %.2f s (attempt %d of %d)",
                    status,
                    url,
                    wait,
                    attempt + 1,
                    policy.attempts,
                )
                policy.sleep(wait)
                continue
            raise UserError(self._status_message(status, response, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _status_message(self, status: int, response: httpx.Response, attempts: int) -> str:
        detail = self._detail_of(response)
        if status in (401, 403):
            if self._key is None:
                return f"the API at {self._base_url} needs a key (HTTP {status}): set ${self._key_env}"
            return (
                f"the API rejected the key in ${self._key_env} (HTTP {status} from {self._base_url}): "
                f"set ${self._key_env} to a valid key"
            )
        if status == 429:
            return (
                f"the API at {self._base_url} kept answering 429 Too Many Requests ({attempts} attempts); "
                "wait and retry, or lower the request rate"
            )
        if status >= 500:
            return f"the API at {self._base_url} failed with HTTP {status} {attempts} times ({detail}); retry later"
        return f"the API at {self._base_url} refused the request with HTTP {status} ({detail}); check --model"

    def _detail_of(self, response: httpx.Response) -> str:
        try:
            return self._detail(response.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._redact(" ".join(response.text.split())[:160]) or response.reason_phrase

    def _detail(self, data: Any) -> str:
        """The server's one-line error message, with the key removed."""
        error = data.get("error") if isinstance(data, Mapping) else None
        if isinstance(error, Mapping):
            error = error.get("message")
        text = str(error if error is not None else data)
        return self._redact(" ".join(text.split())[:160])

    def _redact(self, text: str) -> str:
        return text.replace(self._key, REDACTED) if self._key else text


def load(
    card: ModelCard,
    location: Path | None,
    options: LoadOptions,
    *,
    client: httpx.Client | None = None,
    retry: RetryPolicy | None = None,
    timeouts: ApiTimeouts | None = None,
    environ: Mapping[str, str] | None = None,
    network_probes: int = NETWORK_PROBES,
) -> OpenAIAPIBackend:
    """Connect to the card's OpenAI-compatible endpoint; with no model id, take the server's first model.

    Args:
        card: an ``api`` card whose source is an :class:`ApiEndpoint`.
        location: unused; an API has no local weights.
        options: the clock and seed are used.
        client: the HTTP client (tests inject one); by default one is created and closed with the backend.
        retry: the retry policy (tests inject one whose ``sleep`` does not sleep).
        timeouts: connect, read and write timeouts for a client created here.
        environ: where the key is read from (default: ``os.environ``).
        network_probes: round trips timed at load for :attr:`OpenAIAPIBackend.network_rtt_s` (0: none).

    Raises:
        UserError: the card is not an API card, a remote API has no key, or the server cannot be reached.
    """
    source = card.source
    if not isinstance(source, ApiEndpoint):
        raise UserError(f"{card.name} is a {card.kind} model with local weights; the openai_api backend runs APIs only")
    key = (environ if environ is not None else os.environ).get(source.key_env, "").strip() or None
    host = urlsplit(source.base_url).hostname or ""
    named_by_url = card.name.startswith(("http://", "https://"))
    if key is None and not named_by_url and host not in LOOPBACK_HOSTS:
        raise UserError(f"{card.name} needs an API key: set ${source.key_env} (the key is never logged)")
    owns = client is None
    if client is None:
        client = httpx.Client(timeout=(timeouts or ApiTimeouts()).to_httpx(), trust_env=host not in LOOPBACK_HOSTS)
    backend = OpenAIAPIBackend(
        source, client, api_key=key, clock=options.clock, seed=options.seed, retry=retry, owns_client=owns
    )
    if not source.model:
        try:
            backend.discover_model()
        except UserError:
            backend.close()
            raise
    if network_probes > 0:
        backend.measure_round_trip(network_probes)
    log.debug("openai_api: %s model=%s, key from $%s: %s", source.base_url, backend.model, source.key_env, bool(key))
    return backend
