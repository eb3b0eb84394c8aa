"""The ARQ worker: `arq runner.worker.WorkerSettings` (arq_settings.py), the claim path, job execution,
the heartbeat and its duties, wake-ups, and what task functions share inside a worker."""
from .arq_settings import WorkerSettings, worker_settings

__all__ = ["WorkerSettings", "worker_settings"]
