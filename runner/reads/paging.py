"""Pages of jobs, newest first, that stay put while jobs are submitted between two reads.

An offset would shift by every job submitted in between (and show one job twice), so a cursor names
a place in the order itself: the index score (first submission time, history.py) and id of the last
job given. Jobs are ordered by score, then by id (as Redis orders equal scores), both descending, so
a place is exact even when two jobs share a microsecond, and a job changing status between pages
(so moving between status indexes) does not move it.
"""
from __future__ import annotations

import base64

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidPayload
from ..models import Job
from ..storage.store import Store
from . import history
from .history import HistoryQuery

Row = tuple[float, str]  # (index score, job id)


class Cursor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    score: float = Field(ge=0, le=1e11, allow_inf_nan=False, description="Index score of the last job given.")
    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="Id of the last job given.")

    def encode(self) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(self.model_dump())).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            return cls.model_validate_json(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, ValidationError):
            raise InvalidPayload("cursor is not one this API gave out; start again without it") from None

    @property
    def row(self) -> Row:
        return self.score, self.id


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


async def page(store: Store, q: HistoryQuery, limit: int, cursor: Cursor | None = None) -> JobPage:
    """Up to `limit` jobs matching `q` (its status, type and user) after `cursor`, and a cursor
    whenever more match."""
    rows = await window(store, q, limit + 1, cursor)
    shown = rows[:limit]
    jobs = await store.load_many([job_id for _, job_id in shown])
    more = len(rows) > limit
    return JobPage(jobs=jobs, next_cursor=Cursor(score=shown[-1][0], id=shown[-1][1]).encode() if more else None)


async def window(store: Store, q: HistoryQuery, n: int, cursor: Cursor | None) -> list[Row]:
    """The first `n` rows after `cursor`, in order. The indexes give rows by score alone, so reading
    goes on until the `n`th row's score is passed: its equals are then all read and sorted by id."""
    p = await history.plan(store, q, sized=False)
    if cursor is not None:
        p.hi = repr(cursor.score)  # inclusive: equal scores with a lower id come next
    rows: list[Row] = []
    async for ids in history.Scan(store, p, q).batches():
        if not ids:  # none of this batch matched, and ZMSCORE refuses an empty list
            continue
        scores = await store.redis.zmscore(store.keys.all, ids)
        read = [(float(score), job_id) for score, job_id in zip(scores, ids, strict=True) if score is not None]
        rows += [row for row in read if cursor is None or row < cursor.row]
        if len(rows) >= n and read and read[-1][0] < sorted(rows, reverse=True)[n - 1][0]:
            break
    return sorted(rows, reverse=True)[:n]
