"""Configuration from the environment and `.env`: `REDIS_URL`, then `TASKDECK_*` for every field."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .models import SpendCap


class Settings(BaseSettings):
    # validate_by_name: Settings(redis_url=...) as the settings sources accept it anyway, and so says to mypy
    model_config = SettingsConfigDict(env_prefix="TASKDECK_", env_file=".env", extra="ignore", validate_by_name=True)

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "TASKDECK_REDIS_URL"),
        description="Redis to use; unset means the local one that `up` starts.",
    )
    data_dir: Path = Field(Path(__file__).resolve().parent.parent / ".data",
                           description="Where `up` keeps Redis's data, logs and its lock.")
    local_redis_port: int = Field(6391, description="Port of the Redis that `up` starts when REDIS_URL is unset.")
    prefix: str = Field("taskdeck:", description="Key prefix of Taskdeck's own keys.")
    queue_name: str = Field("arq:queue", description="ARQ queue the workers read.")
    task_modules: list[str] = Field(["runner.tasks"], description="Modules whose import registers task types.")

    max_jobs: int = Field(10, ge=1, description="Jobs of the `default` queue one worker process runs at once.")
    queues: str = Field("", description='Queues a worker serves, each with its slots: "generation=10,scraping=30". '
                        "Unset: every queue, at 10 generation / 30 scraping / 60 sync / TASKDECK_MAX_JOBS default.")
    max_running_per_user: int | None = Field(None, ge=0, description="Running jobs per submitter; unset: no limit.")
    max_running_per_org: int | None = Field(50, ge=0, description="Running jobs per organisation.")
    max_running_global: int | None = Field(None, ge=0, description="Running jobs in total.")
    max_running_per_type: dict[str, int] = Field(default_factory=dict, description="Running jobs per task type.")
    max_submits_per_user_per_hour: int | None = Field(None, ge=1, description="Submits per user per sliding hour.")
    default_schedules: bool = Field(True, description="Create the default schedules (refresh every healthy source "
                                    "every 6 hours) on a worker's first start; each can be paused or deleted, and "
                                    "a deleted one stays deleted.")
    schedules: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Schedules to create at worker start, as JSON: [{"name", "type", "payload", "cron"}].',
    )
    priority_aging_s: float = Field(300.0, gt=0, description="Head start of a priority level over the one below.")
    poll_delay_s: float = Field(0.5, gt=0, description="Longest an idle worker waits to look for due jobs; "
                                "submits and cancels wake it at once.")
    lease_s: float = Field(30.0, ge=3, description="A running job's lease; a dead worker's job runs again after it.")
    shutdown_grace_s: int = Field(5, ge=0, description="On SIGTERM, how long running jobs may finish before handback.")
    retention_days: float = Field(30.0, gt=0, description="How long finished jobs are kept.")
    progress_interval_s: float = Field(0.25, gt=0, description="Least time between two progress writes of one job.")
    idempotency_window_s: int = Field(86400, ge=1, description="How long an idempotency key maps to its first job.")
    cancel_wait_s: float = Field(1.5, ge=0, description="How long cancel() waits to see a running job stop.")

    max_payload_bytes: int = Field(1_000_000, ge=1, description="Largest accepted payload, as JSON.")
    max_payload_depth: int = Field(32, ge=2, description="Deepest nesting of lists and objects in a payload.")
    max_result_bytes: int = Field(256_000, ge=1, description="Results larger than this are kept as an artifact.")
    max_partial_bytes: int = Field(64_000, ge=1, description="Cap on a running job's partial output.")
    max_traceback_chars: int = Field(8_000, ge=100, description="Cap on each stored traceback.")
    events_maxlen: int = Field(50_000, ge=100, description="Approximate length cap of the event stream.")

    archive: bool = Field(True, description="Keep every finished job in the archive (SQL), beyond Redis retention.")
    archive_url: str = Field("", description="SQLAlchemy URL of the archive, e.g. postgresql+psycopg://...; "
                             "empty: SQLite at <data_dir>/archive.db.")
    archive_batch: int = Field(200, ge=1, le=10_000, description="Most finished jobs the archiver writes per batch.")

    production: bool = Field(False, description="Workers refuse a Redis without persistence or with eviction.")
    log_arq_jobs: bool = Field(False, description="Keep ARQ's own two log lines per job beside Taskdeck's.")
    log_json: bool = Field(False, description="Worker transition logs as JSON lines.")
    api_host: str = Field("127.0.0.1", description="Where `python -m runner api` (and `up`) serve the HTTP API.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API.")
    api_max_body_bytes: int = Field(2_000_000, ge=1, description="Largest HTTP API request body.")
    local_user: str = Field("admin@local", description="Who acts when no user is given; always an admin.")
    stalled_after_s: float = Field(60.0, gt=0, description="A running job whose record has not changed for this "
                                   "long is shown as stalled.")
    alert_interval_s: float = Field(10.0, gt=0, description="How often one worker (or the API server) evaluates "
                                    "the alert rules; a worker does it at most once per heartbeat (lease_s / 3).")
    roles: dict[str, Literal["admin", "staff", "analyst"]] = Field(
        default_factory=dict,
        description='Allow-list of email (or pattern, e.g. "*@acme.io") to role, as JSON.',
    )
    orgs: dict[str, str] = Field(
        default_factory=dict,
        description='Organisation of each email (or pattern, e.g. "*@acme.io"), as JSON; the first match wins. '
                    "A user no pattern names belongs to no organisation.",
    )
    org_claim: str | None = Field(None, description="OIDC claim that names a signed-in user's organisation; "
                                  "used when TASKDECK_ORGS names none for them.")
    fetch_allow: list[str] = Field(
        default_factory=list,
        description='Hosts and networks URLs fetched for users may reach although private, as JSON: '
                    '["intranet.acme.io", "10.2.0.0/16"]. Empty: only public addresses.',
    )
    api_stream_max_s: float = Field(900.0, gt=0, description="Longest one event stream stays open; the client "
                                    "reconnects with Last-Event-ID after it ends.")
    api_streams_per_user: int = Field(20, ge=1, description="Event streams one user may hold open at once "
                                      "per API process.")
    redis_timeout_s: float = Field(3.0, gt=0, description="Socket timeout of every Redis call.")
    redis_sentinels: str = Field("", description="Comma-separated host:port of Redis Sentinels; when set they "
                                 "name the primary for every part instead of REDIS_URL.")
    redis_sentinel_master: str = Field("mymaster", description="Name the sentinels monitor the primary under.")
    redis_sentinel_password: str | None = Field(None, repr=False, description="Password of the sentinels.")
    redis_password: str | None = Field(None, repr=False, description="Password of the Redis primary and replicas "
                                       "found through the sentinels.")
    redis_min_replicas: int = Field(0, ge=0, description="Replicas a submit, cancel, retry and a job's final "
                                    "transition must reach (WAIT) before they return; 0: do not wait.")
    redis_wait_timeout_s: float = Field(1.0, gt=0, description="Longest a write waits for TASKDECK_REDIS_MIN_REPLICAS.")
    redis_failover_wait_s: float = Field(0.0, ge=0, description="How long a submit waits for a new primary "
                                         "during a failover before it fails; 0: fail at once.")

    public_url: str = Field("http://127.0.0.1:8501", description="Where users reach the dashboard: the base "
                            "of the links in notifications.")
    smtp_host: str | None = Field(None, description="SMTP server for email notifications; unset: no email.")
    smtp_port: int = Field(587, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_tls: Literal["starttls", "tls", "none"] = Field("starttls", description="How the SMTP connection is "
                                                          "secured: STARTTLS, implicit TLS, or none (local relays).")
    smtp_user: str | None = Field(None, description="SMTP user name; unset: no login.")
    smtp_password: str | None = Field(None, repr=False, description="SMTP password.")
    smtp_sender: str = Field("taskdeck@localhost", description="From address of notification emails.")
    notify_retry_for_s: float = Field(86400.0, gt=0, description="How long a failing callback, webhook or email "
                                      "delivery is retried (with backoff) before it is given up.")
    notify_backoff_s: float = Field(10.0, gt=0, description="Wait before a failed delivery's first retry; it "
                                    "doubles with each failure, up to an hour.")

    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1; "
                                     "unset: the generative task types are listed but refused.")
    llm_embedded: bool = Field(True, description="With no TASKDECK_LLM_BASE_URL, run the generative types on the "
                               "packaged demo model; false: refuse them until an endpoint is set.")
    llm_api_key: str | None = Field(None, repr=False, description="Key for the endpoint (a local Ollama needs none).")
    llm_model: str | None = Field(None, description="Model the endpoint serves, e.g. gpt-4o-mini.")
    llm_timeout_s: float = Field(120.0, gt=0, description="Longest one try of one LLM call may take.")
    llm_max_tries: int = Field(4, ge=1, description="Tries of one call on 5xx, timeouts and broken replies.")
    llm_throttle_wait_s: float = Field(600.0, ge=0, description="How long one call waits out 429s before failing.")
    llm_retry_after_cap_s: float = Field(60.0, gt=0, description="Longest single wait a Retry-After may ask for.")
    llm_structured_output: str = Field("auto", pattern="^(auto|json_schema|json_object|text)$",
                                       description="How replies are held to the result schema; auto falls back "
                                       "to JSON in text when the endpoint refuses json_schema.")
    llm_parse_retries: int = Field(2, ge=0, description="Re-asks when a reply does not fit the result model.")
    llm_temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; unset: the model's.")
    llm_rpm: int = Field(0, ge=0, description="Requests per minute shared by all workers; 0: no limit.")
    llm_tpm: int = Field(0, ge=0, description="Tokens per minute shared by all workers; 0: no limit.")
    llm_breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit breaker.")
    llm_breaker_cooldown_s: float = Field(30.0, gt=0, description="How long an open breaker fails calls fast.")
    llm_user_tokens_per_hour: int = Field(0, ge=0, description="LLM tokens one user may use per clock hour, "
                                          "checked at submit; 0: no quota.")
    user_spend_caps: dict[str, dict[Literal["day", "month"], SpendCap]] = Field(
        default_factory=dict,
        description='LLM spend per user per UTC day and month, by email or pattern (the first match wins), as JSON: '
                    '{"*": {"day": {"max_cost_usd": 5}, "month": {"max_tokens": 2000000}}}. A spent cap refuses '
                    "the user's next submit and stops their running jobs at their next LLM call.",
    )
    org_spend_caps: dict[str, dict[Literal["day", "month"], SpendCap]] = Field(
        default_factory=dict,
        description='The same per organisation, by name or pattern: {"acme": {"month": {"max_cost_usd": 200}}}.',
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1-nano": (0.10, 0.40),
            "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1": (2.00, 8.00), "gpt-5-mini": (0.25, 2.00), "gpt-5": (1.25, 10.00),
            "gemini-2.0-flash": (0.10, 0.40), "gemini-2.5-flash": (0.30, 2.50), "gemini-2.5-pro": (1.25, 10.00),
        },
        description="USD per million input and output tokens by model name (longest matching prefix wins); "
                    "models not listed cost 0 (local ones).",
    )

    @property
    def url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.local_redis_port}/0"
