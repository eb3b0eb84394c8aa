"""GET /api/jobs pages: stable cursors and a next_cursor whenever more jobs exist, over a real API process."""
from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis

from runner import AsyncClient, Client, Settings
from runner.policy.access import Role
from runner.reads.paging import Cursor
from tests.api_server import ROLES, is_problem, token

ADMIN = ("boss@x.io", Role.admin)




def submit_many(n: int, user: str | None = None) -> list[str]:
    """`n` DEMO jobs, submitted in order (each one newer than the last), as `user` or the local admin."""
    async def run() -> list[str]:
        async with AsyncClient(Settings(roles=ROLES)) as client:
            return [(await client.submit("DEMO", user=user)).id for _ in range(n)]
    return asyncio.run(run())


def pages(api: str, auth: dict[str, str], limit: int, between: list[int] | None = None,
          **params: str) -> tuple[list[str], list[int]]:
    """Every id over all pages, and each page's size; submits `between[i]` jobs before page i + 1."""
    ids: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = httpx.get(f"{api}/api/jobs", headers=auth, timeout=30,
                         params={"limit": limit, **params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        ids += [job["id"] for job in page.json()["jobs"]]
        sizes.append(len(page.json()["jobs"]))
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids, sizes
        if between and len(sizes) <= len(between):
            submit_many(between[len(sizes) - 1])


def test_the_largest_page_says_when_more_jobs_exist(api: str) -> None:
    ids = submit_many(1001)
    auth = token(*ADMIN)
    listed, sizes = pages(api, auth, 1000)
    assert sizes == [1000, 1], "limit=1000 with 1001 jobs: a next_cursor, then the last one"
    assert listed == ids[::-1]
    with Client(Settings(roles=ROLES)) as admin:
        first = admin.page(limit=5000)
        assert len(first.jobs) == 1000 and first.next_cursor, "the client caps at 1000, and says more exist"
        assert [job.id for job in admin.page(cursor=first.next_cursor).jobs] == [ids[0]]


def test_submits_between_pages_neither_shift_nor_repeat_jobs(api: str) -> None:
    auth = token(*ADMIN)
    ids = submit_many(9)
    listed, sizes = pages(api, auth, 2, between=[3, 3, 3])
    assert listed == ids[::-1] and sizes == [2, 2, 2, 2, 1], "the 9 jobs there at the first page, each once"


def test_a_job_that_changes_status_between_pages_keeps_its_place(api: str) -> None:
    auth = token()
    mine = [httpx.post(f"{api}/api/jobs", headers=auth, json={"type": "DEMO"}).json()["id"] for _ in range(6)]
    first = httpx.get(f"{api}/api/jobs", headers=auth, params={"limit": 2}).json()
    httpx.delete(f"{api}/api/jobs/{mine[2]}", headers=auth)
    rest = httpx.get(f"{api}/api/jobs", headers=auth, params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in first["jobs"] + rest["jobs"]] == mine[::-1] and rest["next_cursor"] is None


def test_jobs_that_share_a_submission_time_are_each_listed_once(api: str, r: redis.Redis) -> None:
    """Two submits in one microsecond get one score: the cursor's id orders them (as Redis does)."""
    ids = submit_many(7, user="staff@x.io")
    tied = ids[1:6]
    score = r.zscore("taskdeck:idx:all", ids[3])
    for key in ("taskdeck:idx:all", "taskdeck:idx:status:queued", "taskdeck:idx:type:DEMO",
                "taskdeck:idx:user:staff@x.io"):
        r.zadd(key, dict.fromkeys(tied, score), xx=True)
    with Client(Settings(roles=ROLES)) as admin:
        admin.cancel(tied[0])  # in another status index now, with the same score
    expected = [ids[6], *sorted(tied, reverse=True), ids[0]]
    for auth, params in ((token(), {}), (token(*ADMIN), {}), (token(*ADMIN), {"type": "DEMO"})):
        for limit in (1, 2, 3):
            assert pages(api, auth, limit, **params)[0] == expected, (limit, params)
    with Client(Settings(roles=ROLES)) as admin:
        both = [job.id for page in walk(admin, ["queued", "cancelled"]) for job in page]
    assert both == expected, "a page across two status indexes orders the tie the same way"


def walk(client: Client, status: list[str]) -> Iterator[list]:
    cursor = None
    while True:
        page = client.page(status=status, limit=2, cursor=cursor)
        yield page.jobs
        cursor = page.next_cursor
        if cursor is None:
            return


def test_another_users_jobs_stay_out_of_every_page(api: str) -> None:
    submit_many(3, user="other@x.io")
    mine = submit_many(3, user="staff@x.io")
    submit_many(3, user="other@x.io")
    listed, _ = pages(api, token(), 1)
    assert listed == mine[::-1]


def encoded(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


GOOD_ID = "0123456789abcdef" * 2


@pytest.mark.parametrize("cursor", [
    "garbage", "!!!!", "é", "a" * 200,
    encoded({"offset": 50}),  # the old offset cursors
    encoded({"score": 1.0}), encoded({"id": GOOD_ID}),
    encoded({"score": -1.0, "id": GOOD_ID}), encoded({"score": 1e12, "id": GOOD_ID}),
    base64.urlsafe_b64encode(b'{"score": NaN, "id": "' + GOOD_ID.encode() + b'"}').decode(),
    base64.urlsafe_b64encode(b'{"score": Infinity, "id": "' + GOOD_ID.encode() + b'"}').decode(),
    encoded({"score": "1", "id": GOOD_ID}), encoded({"score": 1.0, "id": "../../etc"}),
    encoded({"score": 1.0, "id": GOOD_ID.upper()}), encoded({"score": 1.0, "id": GOOD_ID, "user": "boss@x.io"}),
    encoded([1.0, GOOD_ID]), encoded(None),
])
def test_a_forged_cursor_is_a_422(api: str, cursor: str) -> None:
    is_problem(httpx.get(f"{api}/api/jobs", headers=token(), params={"cursor": cursor}), 422)


def test_limits_are_the_same_everywhere(api: str) -> None:
    auth = token()
    for limit in (0, 1001, -1):
        is_problem(httpx.get(f"{api}/api/jobs", headers=auth, params={"limit": limit}), 422)
    assert Cursor.decode(Cursor(score=1.5, id=GOOD_ID).encode()) == Cursor(score=1.5, id=GOOD_ID)
