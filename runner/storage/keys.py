"""Redis key names: Taskdeck's own under one prefix, and the ARQ 0.28 keys that Taskdeck touches."""
from __future__ import annotations

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix


class Keys:
    def __init__(self, prefix: str, queue: str) -> None:
        self.prefix = prefix
        self.queue = queue
        self.all = f"{prefix}idx:all"
        self.dead = f"{prefix}idx:dead"
        self.expiry = f"{prefix}idx:expiry"
        self.events = f"{prefix}events"
        self.audit = f"{prefix}audit"
        self.limits = f"{prefix}limits"
        self.wake = f"{prefix}wake"
        self.workers = f"{prefix}workers"  # worker id -> the time until which it counts as alive

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def artifact(self, job_id: str) -> str:
        return f"{self.prefix}artifact:{job_id}"

    def status(self, status: str) -> str:
        return f"{self.prefix}idx:status:{status}"

    def type(self, name: str) -> str:
        return f"{self.prefix}idx:type:{name}"

    def user(self, user: str) -> str:
        return f"{self.prefix}idx:user:{user}"

    def pending(self, priority: str) -> str:
        return f"{self.prefix}idx:pending:{priority}"

    def metrics(self, resolution: str, bucket: int) -> str:
        return f"{self.prefix}m:{resolution}:{bucket}"

    def idempotency(self, user: str, key: str) -> str:
        """A submitter's own namespace: another user's key of the same text is another key."""
        return f"{self.prefix}idem:user:{user}:{key}"

    def schedule_slot(self, name: str, slot: str) -> str:
        """A schedule run's key: in a namespace that no submit reaches (see idempotency)."""
        return f"{self.prefix}idem:schedule:{name}:{slot}"

    def rate(self, user: str) -> str:
        return f"{self.prefix}rate:{user}"

    def parked(self, kind: str, name: str) -> str:
        return f"{self.prefix}parked:{kind}:{name}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    abort = abort_jobs_ss

    @staticmethod
    def arq_job(job_id: str) -> str:
        return job_key_prefix + job_id

    @staticmethod
    def arq_in_progress(job_id: str) -> str:
        return in_progress_key_prefix + job_id

    @staticmethod
    def arq_retry(job_id: str) -> str:
        return retry_key_prefix + job_id

    @staticmethod
    def arq_result(job_id: str) -> str:
        return result_key_prefix + job_id
