"""GENERATE_MEDIA_PLAN: a strategy, then a posting calendar one week at a time, then how to measure it."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field

from .generation import Brief, Done, Part, generative


class MediaPlanPayload(Brief):
    model_config = ConfigDict(title="Media plan")

    brand: str = Field(min_length=1, max_length=200)
    product: str = Field("", max_length=2000)
    audience: str = Field(min_length=1, max_length=1000)
    goals: list[str] = Field(default_factory=lambda: ["awareness"], min_length=1, max_length=10)
    channels: list[str] = Field(default_factory=lambda: ["Instagram", "LinkedIn"], min_length=1, max_length=10)
    weeks: int = Field(4, ge=1, le=26)
    posts_per_week: int = Field(3, ge=1, le=21)
    start_date: date | None = Field(None, description="First day of week 1; unset: next Monday.")


class Pillar(BaseModel):
    name: str
    description: str


class ChannelRole(BaseModel):
    channel: str
    role: str
    cadence: str


class Strategy(BaseModel):
    objective: str
    pillars: list[Pillar]
    channel_roles: list[ChannelRole]
    key_messages: list[str]


class Post(BaseModel):
    day: int = Field(ge=1, le=7, description="1 = Monday")
    channel: str
    format: str
    pillar: str
    hook: str
    caption: str
    call_to_action: str
    hashtags: list[str]


class WeekPosts(BaseModel):
    posts: list[Post]


class Week(WeekPosts):
    week: int
    starts: date


class Kpi(BaseModel):
    name: str
    target: str
    channel: str


class Share(BaseModel):
    channel: str
    percent: float = Field(ge=0, le=100)


class Measurement(BaseModel):
    kpis: list[Kpi]
    effort_split: list[Share]
    risks: list[str]


class MediaPlan(BaseModel):
    strategy: Strategy
    weeks: list[Week]
    measurement: Measurement
    total_posts: int


def plan(brief: MediaPlanPayload) -> list[Part]:
    calendar = [Part(f"week:{n}", "Calendar", WeekPosts, week_ask(brief, n), expect_chars=400 * brief.posts_per_week)
                for n in range(1, brief.weeks + 1)]
    return [
        Part("strategy", "Strategy", Strategy,
             "Set the plan's objective, 3-5 content pillars, the role and cadence of each channel, and the key "
             "messages."),
        *calendar,
        Part("measurement", "Measurement", Measurement,
             "Give the KPIs with targets per channel, how to split effort across the channels (percent, summing "
             "to 100) and the main risks."),
    ]


def week_ask(brief: MediaPlanPayload, n: int) -> Callable[[Done], str]:
    def ask(done: Done) -> str:
        strategy: Strategy = done["strategy"]
        pillars = ", ".join(p.name for p in strategy.pillars)
        before = [post.hook for key, part in done.items() if key.startswith("week:") for post in part.posts]
        recent = "; ".join(before[-15:]) or "none yet"
        return (f"Write week {n} of {brief.weeks}: exactly {brief.posts_per_week} posts over the channels "
                f"{', '.join(brief.channels)}, rotating the pillars ({pillars}). Do not repeat these earlier hooks: "
                f"{recent}.")
    return ask


def first_monday(brief: MediaPlanPayload) -> date:
    if brief.start_date:
        return brief.start_date
    today = date.today()
    return today + timedelta(days=7 - today.weekday())


def assemble(brief: MediaPlanPayload, done: Done) -> MediaPlan:
    start = first_monday(brief)
    weeks = [Week(week=n, starts=start + timedelta(weeks=n - 1), posts=done[f"week:{n}"].posts[: brief.posts_per_week])
             for n in range(1, brief.weeks + 1)]
    return MediaPlan(strategy=done["strategy"], weeks=weeks, measurement=done["measurement"],
                     total_posts=sum(len(w.posts) for w in weeks))


generative(
    "GENERATE_MEDIA_PLAN", payload=MediaPlanPayload, result=MediaPlan,
    steps=["Strategy", "Calendar", "Measurement"], role="You are a senior social media strategist.",
    plan=plan, assemble=assemble,
    description="A media plan: strategy, a post calendar written week by week, KPIs (LLM).",
)
