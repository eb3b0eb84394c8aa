"""The LLM client: streamed chat completions from an OpenAI-compatible endpoint, held to a result model,
retried inside the call, behind a circuit breaker and a rate budget that every worker shares."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

import openai
from openai.types import CompletionUsage
from pydantic import BaseModel
from redis.asyncio import Redis
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.wait import wait_exponential_jitter

from .. import context
from ..context import TaskContext
from ..errors import Fatal
from ..settings import Settings
from ..storage.keys import Keys
from . import endpoint_id, pricing, spend, structured, usage
from .breaker import Breaker
from .budget import Budget
from .errors import EndpointFailed, EndpointRefused, LlmError, OutputInvalid
from .retry import BrokenStream, CallTimeout, failing, out_of_quota, stop_policy, throttled, transient, wait_retry_after
from .spend import BudgetExceeded, Meter
from .usage import Call

logger = logging.getLogger("taskdeck.llm")
M = TypeVar("M", bound=BaseModel)
Message = dict[str, str]
OnText = Callable[[str], Awaitable[None]]
OnCall = Callable[[Call], Awaitable[None]]
OUTPUT_RESERVE_TOKENS = 1000
MODE_MEMORY_S = 86400  # how long an endpoint's refusal of json_schema is remembered before it is asked again


@dataclass
class Reply(Generic[M]):
    value: M
    text: str
    calls: list[Call] = field(default_factory=list)


def estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


class LLM:
    """One endpoint and model, from Settings.llm_*. Create one per worker process and share it."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        if not settings.llm_base_url or not settings.llm_model:
            raise EndpointRefused("no LLM endpoint configured: set TASKDECK_LLM_BASE_URL and TASKDECK_LLM_MODEL")
        self.settings = settings
        self.model = settings.llm_model
        self.endpoint = endpoint_id(settings.llm_base_url)
        self.redis = redis
        self.client = openai.AsyncOpenAI(base_url=settings.llm_base_url, api_key=settings.llm_api_key or "none",
                                         max_retries=0, timeout=settings.llm_timeout_s)
        prefix = settings.prefix
        self.breaker = Breaker(redis, prefix, self.endpoint, settings.llm_breaker_failures,
                               settings.llm_breaker_cooldown_s)
        self.budget = Budget(redis, prefix, self.endpoint, settings.llm_rpm, settings.llm_tpm)
        self._modes = Keys(prefix).llm_modes(self.endpoint)
        self._mode: str | None = None

    async def close(self) -> None:
        await self.client.close()

    async def mode(self) -> str:
        """How replies are held to the schema: the setting, or for `auto` json_schema unless the endpoint
        refused it before (remembered in Redis for every worker)."""
        if self.settings.llm_structured_output != "auto":
            return self.settings.llm_structured_output
        if self._mode is None:
            remembered = await self.redis.hget(self._modes, self.model)  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
            self._mode = "text" if remembered == "text" else "json_schema"
        return self._mode

    async def generate(self, messages: Sequence[Message], result: type[M], on_text: OnText | None = None,
                       on_call: OnCall | None = None) -> Reply[M]:
        """Ask for a `result`. A reply that does not fit is shown what was wrong and asked again, up to
        Settings.llm_parse_retries times; `on_call` sees every call, also those of a failed generation."""
        mode = await self.mode()
        calls: list[Call] = []
        asked = with_instruction(messages, mode, result)
        for _ in range(self.settings.llm_parse_retries + 1):
            try:
                text, call = await self.chat(asked, structured.response_format(mode, result), on_text)
            except EndpointRefused as e:
                if not (e.status == 400 and mode == "json_schema" and self.settings.llm_structured_output == "auto"):
                    raise
                logger.warning("json_schema output refused; asking for JSON in text instead: %s", e)
                mode = self._mode = "text"
                asked = with_instruction(messages, mode, result)
                text, call = await self.chat(asked, None, on_text)
                await self.redis.hset(self._modes, self.model, "text")  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
                await self.redis.expire(self._modes, MODE_MEMORY_S)
            calls.append(call)
            if on_call:
                await on_call(call)
            try:
                return Reply(structured.parse(text, result), text, calls)
            except OutputInvalid as e:
                problem = e
                cut = " It was cut off at the output limit: be briefer." if call.finish_reason == "length" else ""
                asked = [*asked, {"role": "assistant", "content": text},
                         {"role": "user", "content": f"That reply could not be used: {e}.{cut} "
                                                     "Reply again with only the corrected JSON object."}]
        raise OutputInvalid(f"the model's reply did not fit {result.__name__} in "
                            f"{self.settings.llm_parse_retries + 1} tries: {problem}")

    async def chat(self, messages: Sequence[Message], response_format: dict[str, Any] | None = None,
                   on_text: OnText | None = None) -> tuple[str, Call]:
        """One streamed completion: its text, and its usage and cost. Made by a task (context.current), it
        is held to the job's spend caps before it is sent and as it streams (spend.py), and its usage is
        recorded against the job (a task records none itself)."""
        policy = stop_policy(self.settings.llm_max_tries, self.settings.llm_throttle_wait_s)
        retrying = AsyncRetrying(
            retry=retry_if_exception(transient), stop=policy, reraise=True, before_sleep=self._log_retry,
            wait=wait_retry_after(wait_exponential_jitter(multiplier=0.5, max=20, jitter=0.5),
                                  self.settings.llm_retry_after_cap_s),
        )
        started = time.monotonic()
        task = context.current.get()
        meter = await self._admit(task, messages, started) if task else None
        try:
            reply: tuple[str, CompletionUsage | None, str | None] = await retrying(
                self._once, list(messages), response_format, on_text, meter)
        except BudgetExceeded as e:
            if task and e.call:
                await self._charge(task, e.call)
            raise
        except Exception as e:
            raise explain(e, self.endpoint, self.model, policy) from e
        text, usage, finish = reply
        estimated = usage is None
        tokens_in = usage.prompt_tokens if usage else estimate_tokens(json.dumps(list(messages)))
        tokens_out = usage.completion_tokens if usage else estimate_tokens(text)
        call = Call(model=self.model, tokens_in=tokens_in, tokens_out=tokens_out,
                    cost_usd=pricing.cost(self.settings.llm_prices, self.model, tokens_in, tokens_out),
                    seconds=round(time.monotonic() - started, 3), tries=policy.failures + policy.throttled + 1,
                    throttled=policy.throttled, estimated=estimated, finish_reason=finish,
                    priced=pricing.price(self.settings.llm_prices, self.model) is not None)
        return text, (await self._charge(task, call) if task else call)

    async def _admit(self, task: TaskContext, messages: Sequence[Message], started: float) -> Meter:
        """The call's meter, once the job's caps and its owner's (and org's) day and month caps allow it."""
        meter = Meter(task, self.settings.llm_prices, self.model, spend.prompt_tokens(messages), started)
        meter.before()
        spent = await spend.first_spent(self.redis, self.settings, task.user_id, task.org_id)
        if spent:
            raise BudgetExceeded(spent.message)
        return meter

    async def _charge(self, task: TaskContext, call: Call) -> Call:
        """Record `call` against the task's job: its record's totals, and its step's, user's and org's."""
        call = call.model_copy(update={"step": task.current_step, "part": context.in_checkpoint.get()})
        await task.record_usage(call.tokens_in, call.tokens_out, call.cost_usd)
        await usage.record(self.redis, self.settings.prefix, task.job_id, task.task_type, task.user_id, call,
                           self.settings.retention_days * 86400, org=task.org_id)
        return call

    async def _once(self, messages: list[Message], response_format: dict[str, Any] | None, on_text: OnText | None,
                    meter: Meter | None = None) -> tuple[str, CompletionUsage | None, str | None]:
        if meter is not None:
            on_text = metered(on_text, meter)
        await self.breaker.allow()
        reserved = estimate_tokens(json.dumps(messages)) + OUTPUT_RESERVE_TOKENS
        await self.budget.take(reserved)
        timer = asyncio.timeout(self.settings.llm_timeout_s)
        try:
            async with timer:
                text, usage, finish = await self._stream(messages, response_format, on_text)
            if finish is None:
                raise BrokenStream("the stream ended before the reply was finished")
        except TimeoutError:
            if not timer.expired():
                raise
            await self._failed(CallTimeout(f"no complete reply within {self.settings.llm_timeout_s:g} s"))
        except json.JSONDecodeError as e:
            await self._failed(BrokenStream(f"malformed stream from the endpoint: {e}"))
        except Exception as e:
            if failing(e):
                await self.breaker.failed(describe(e))
            raise
        await self.breaker.succeeded()
        if usage is not None:
            await self.budget.settle(reserved, usage.total_tokens or usage.prompt_tokens + usage.completion_tokens)
        return text, usage, finish

    async def _stream(self, messages: list[Message], response_format: dict[str, Any] | None,
                      on_text: OnText | None) -> tuple[str, CompletionUsage | None, str | None]:
        """One completion, streamed: its text (each piece passed to `on_text` as it comes), its usage (when the
        endpoint reports it) and its finish reason (None when the stream ended early)."""
        chunks: list[str] = []
        usage: CompletionUsage | None = None
        finish: str | None = None
        stream = await self.client.chat.completions.create(**self._request(messages, response_format))
        async with stream:
            async for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    if choice.delta and choice.delta.content:
                        chunks.append(choice.delta.content)
                        if on_text:
                            await on_text(choice.delta.content)
        return "".join(chunks), usage, finish

    async def _failed(self, error: Exception) -> NoReturn:
        await self.breaker.failed(str(error))
        raise error

    def _request(self, messages: list[Message], response_format: dict[str, Any] | None) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                   "stream_options": {"include_usage": True}}
        if response_format:
            request["response_format"] = response_format
        if self.settings.llm_temperature is not None:
            request["temperature"] = self.settings.llm_temperature
        return request

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        kind = "throttled (429)" if throttled(error) else describe(error)
        logger.info("%s: %s; try %d again in %.2f s", self.endpoint, kind, state.attempt_number + 1, wait)


def metered(on_text: OnText | None, meter: Meter) -> OnText:
    """`on_text` behind the meter: each piece of the reply is counted, and the call stops past a cap."""
    chars = 0

    async def counted(delta: str) -> None:
        nonlocal chars
        chars += len(delta)
        if on_text:
            await on_text(delta)  # kept in the partial output also when it is the piece that stops the call
        meter.streamed(chars)

    return counted


def with_instruction(messages: Sequence[Message], mode: str, result: type[BaseModel]) -> list[Message]:
    """`messages` with the structured-output instruction added to the system message."""
    note = structured.instruction(mode, result)
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


# Credentials an endpoint or a proxy in front of it may echo back in an error body (a proxy that
# repeats the request's headers would otherwise put the API key into every job's error and the breaker).
CREDENTIAL = re.compile(
    r"(?i)(bearer\s+|basic\s+|\b(?:authorization|proxy-authorization|x-api-key|api[-_]?key|access[-_]?token"
    r"|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"
    r"|\b(?:sk|pk|rk|ghp|xox[abp])[-_][A-Za-z0-9_-]{8,}"
)


def scrub(text: str) -> str:
    """`text` with anything that looks like a credential replaced by [redacted]."""
    return CREDENTIAL.sub(lambda m: f"{m.group(1) or ''}[redacted]", text)


def describe(error: BaseException | None) -> str:
    """An endpoint error as one line for job records, logs and the Workers page: credentials scrubbed."""
    if isinstance(error, openai.APIStatusError):
        return scrub(f"HTTP {error.status_code}: {error.message}")[:300]
    return scrub(f"{type(error).__name__}: {error}")[:300]


def explain(error: Exception, endpoint: str, model: str, policy: stop_policy) -> Exception:
    """The exception a task sees once the call's own retries are spent, with what to do about it."""
    if isinstance(error, LlmError | Fatal):
        return error
    if out_of_quota(error):
        return EndpointRefused(f"{endpoint} says the account is out of quota (429 insufficient_quota); add "
                               "credit or point TASKDECK_LLM_BASE_URL at another endpoint", status=429)
    if throttled(error):
        return EndpointFailed(f"{endpoint} kept answering 429 (rate limited) for {policy.throttle_s:g} s; lower the "
                              "load, set TASKDECK_LLM_RPM / TASKDECK_LLM_TPM, or raise TASKDECK_LLM_THROTTLE_WAIT_S")
    if transient(error):
        return EndpointFailed(f"{endpoint} failed {policy.failures} tries in a row; last: {describe(error)}")
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return EndpointRefused(f"{endpoint} refused the API key ({describe(error)}); set TASKDECK_LLM_API_KEY",
                               status=error.status_code)
    if isinstance(error, openai.NotFoundError):
        return EndpointRefused(f"{endpoint} has no model {model!r} or no chat-completions route ({describe(error)}); "
                               "check TASKDECK_LLM_MODEL and TASKDECK_LLM_BASE_URL (it usually ends in /v1)",
                               status=404)
    if isinstance(error, openai.APIStatusError):
        return EndpointRefused(f"{endpoint} refused the request: {describe(error)}", status=error.status_code)
    return error
