"""A rerun: a finished job run again as a new job, from a step and/or with an edited payload, reusing the
checkpoints (TaskContext.run) its old job made before that step. The new job is linked to the old one
(`rerun_of`) and names what it reused (`reused_steps`); the copies are written by the script that creates
it, so a refused submit copies nothing. Also the spend caps a job gets at submit (`job_caps`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .. import registry
from ..errors import InvalidPayload, InvalidTransition
from ..models import TERMINAL, Job, SpendCap
from ..policy.access import Action
from ..registry import TaskType
from ..storage import checkpoints
from ..storage.keys import Keys

if TYPE_CHECKING:
    from .facade import AsyncClient


@dataclass(frozen=True)
class Lineage:
    """What a rerun's new job takes from its old one."""

    rerun_of: str
    reused: list[str]
    stored: dict[str, str]  # the old job's checkpoints
    caps: SpendCap  # the old job's: the new one's unless the rerun names others

    def calls(self, keys: Keys, job_id: str, ttl_s: float) -> list[list[Any]]:
        return checkpoints.copy_calls(keys, job_id, self.stored, self.reused, ttl_s)


def job_caps(task_type: TaskType, max_tokens: int | None, max_cost_usd: float | None,
             base: SpendCap | None = None) -> SpendCap:
    """A job's spend caps: those given, else `base`'s (a rerun's old job), else the task type's defaults.
    InvalidPayload for a cap that is not a positive number."""
    base = base or SpendCap(max_tokens=task_type.max_tokens, max_cost_usd=task_type.max_cost_usd)
    try:
        return SpendCap(max_tokens=base.max_tokens if max_tokens is None else max_tokens,
                        max_cost_usd=base.max_cost_usd if max_cost_usd is None else max_cost_usd)
    except ValidationError as e:
        problem = e.errors()[0]
        raise InvalidPayload(f"{problem['loc'][0]}: {problem['msg']}; got {problem.get('input')!r}",
                             [{"loc": list(problem["loc"]), "msg": problem["msg"]}]) from None


def step_names(job: Job, task_type: TaskType) -> list[str]:
    """The job's steps in order: as its last attempt ran them, then the type's declared ones it did not reach."""
    ran = [step.name for step in job.steps]
    return ran + [name for name in task_type.steps if name not in ran]


async def rerun(client: AsyncClient, job_id: str, from_step: str | None, payload: Any,
                max_tokens: int | None, max_cost_usd: float | None) -> Job:
    """A new job of `job_id`'s type, owner and priority, with `payload` (default: the old one) validated as
    a submit does, reusing the old job's checkpoints made before `from_step` (none without it); admitted and
    rate-limited like a submit. Only a finished job can be rerun: an active one still makes checkpoints."""
    client.principal.require(Action.retry)
    async with client.store.guard("nothing was retried"):
        old = await client.owned(job_id)
        if old.status not in TERMINAL:
            raise InvalidTransition(f"job {job_id} is {old.status}; only a completed, failed or cancelled job can be "
                                    "rerun from a step or with an edited payload")
        stored: dict[str, str] = await client.store.redis.hgetall(  # type: ignore[misc]  # redis-py types replies `Awaitable[T] | T` for both clients
            client.store.keys.checkpoints(old.id))
    task_type = registry.get(old.type)
    reused = checkpoints.before(stored, from_step, step_names(old, task_type)) if from_step else []
    lineage = Lineage(old.id, reused, stored, SpendCap(max_tokens=old.max_tokens, max_cost_usd=old.max_cost_usd))
    org = old.org_id if client.principal.acts_for_org(old.org_id) else ""
    return await client.submit_keyed(old.type, old.payload if payload is None else payload, old.user_id, org,
                                     old.priority, None, max_tokens=max_tokens, max_cost_usd=max_cost_usd,
                                     lineage=lineage)
