"""GENERATE_TRENDS, GENERATE_GLOBAL_TRENDS and GENERATE_FACEBOOK_TRENDS: trends read from the model and
from the context sources the brief names (feeds synced by SYNC_RSS, pages read by SCRAPE_WEBSITE)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .generation import Brief, Part, generative

SOURCES: Any = Field(default_factory=list, max_length=20,
                description="Feeds or pages already synced (SYNC_RSS, SCRAPE_WEBSITE) to read as context.")


class Trend(BaseModel):
    name: str
    summary: str
    evidence: list[str]
    momentum: Literal["rising", "peaking", "fading"]
    relevance: int = Field(ge=1, le=10)


class TrendList(BaseModel):
    trends: list[Trend]


class Action(BaseModel):
    trend: str
    action: str
    channel: str
    effort: Literal["low", "medium", "high"]


class Recommendations(BaseModel):
    actions: list[Action]
    watchlist: list[str]


class TrendsPayload(Brief):
    model_config = ConfigDict(title="Trends")

    industry: str = Field(min_length=1, max_length=300)
    region: str = Field("Global", max_length=200)
    timeframe: str = Field("the next 3 months", max_length=100)
    audience: str = Field("", max_length=1000)
    count: int = Field(8, ge=3, le=30)
    sources: list[str] = SOURCES


class TrendReport(BaseModel):
    trends: list[Trend]
    recommendations: Recommendations


class GlobalTrendsPayload(Brief):
    model_config = ConfigDict(title="Global trends")

    industry: str = Field(min_length=1, max_length=300)
    regions: list[str] = Field(default_factory=lambda: ["North America", "Europe", "Asia-Pacific", "Latin America",
                                                        "Middle East & Africa"], min_length=1, max_length=12)
    per_region: int = Field(5, ge=2, le=10)
    sources: list[str] = SOURCES


class RegionTrends(BaseModel):
    region: str
    trends: list[Trend]


class Theme(BaseModel):
    name: str
    summary: str
    regions: list[str]


class Synthesis(BaseModel):
    global_themes: list[Theme]
    divergences: list[str]
    recommendations: list[str]


class GlobalTrends(BaseModel):
    regions: list[RegionTrends]
    synthesis: Synthesis


class FacebookTrendsPayload(Brief):
    model_config = ConfigDict(title="Facebook trends")

    niche: str = Field(min_length=1, max_length=300)
    audience: str = Field("", max_length=1000)
    region: str = Field("Global", max_length=200)
    count: int = Field(6, ge=2, le=20)
    sources: list[str] = SOURCES


class FacebookPost(BaseModel):
    trend: str
    format: str = Field(description="Reel, carousel, group post, live, ...")
    hook: str
    copy_text: str
    call_to_action: str


class FacebookPosts(BaseModel):
    posts: list[FacebookPost]


class FacebookTrends(BaseModel):
    trends: list[Trend]
    posts: list[FacebookPost]


def brief_sources(brief: TrendsPayload | GlobalTrendsPayload | FacebookTrendsPayload) -> Sequence[str]:
    return brief.sources


def trend_names(trends: list[Trend]) -> str:
    return "; ".join(t.name for t in trends)


def trends_plan(brief: TrendsPayload) -> list[Part]:
    return [
        Part("trends", "Identify trends", TrendList,
             f"Identify the {brief.count} trends that matter most in {brief.industry} ({brief.region}) for "
             f"{brief.timeframe}; ground them in the context where it applies, and rate momentum and relevance."),
        Part("recommendations", "Recommendations", Recommendations, lambda done: (
            f"For these trends ({trend_names(done['trends'].trends)}) recommend concrete actions, one or two each, "
            "and list what to keep watching.")),
    ]


def global_plan(brief: GlobalTrendsPayload) -> list[Part]:
    regional = [Part(f"region:{n}", "Regional trends", RegionTrends,
                     f"Identify the {brief.per_region} strongest {brief.industry} trends in {region}.",
                     expect_chars=500 * brief.per_region) for n, region in enumerate(brief.regions, 1)]
    return [*regional, Part("synthesis", "Global synthesis", Synthesis, lambda done: (
        "Across these regional findings, name the global themes, where regions diverge, and what to do: "
        + " | ".join(f"{r.region}: {trend_names(r.trends)}" for key, r in done.items() if key.startswith("region:"))))]


def facebook_plan(brief: FacebookTrendsPayload) -> list[Part]:
    return [
        Part("trends", "Facebook trends", TrendList,
             f"Identify {brief.count} trends in how people in {brief.region} engage with {brief.niche} on Facebook "
             "(formats, topics, groups, ad styles), with momentum and relevance."),
        Part("posts", "Post ideas", FacebookPosts, lambda done: (
            f"Write one Facebook post idea per trend ({trend_names(done['trends'].trends)}).")),
    ]


generative(
    "GENERATE_TRENDS", payload=TrendsPayload, result=TrendReport, steps=["Identify trends", "Recommendations"],
    sources=brief_sources, role="You are a trend analyst.", plan=trends_plan,
    assemble=lambda brief, done: TrendReport(trends=done["trends"].trends, recommendations=done["recommendations"]),
    description="Trends in an industry and region, with actions; reads synced sources (LLM).",
)

generative(
    "GENERATE_GLOBAL_TRENDS", payload=GlobalTrendsPayload, result=GlobalTrends,
    steps=["Regional trends", "Global synthesis"], sources=brief_sources,
    role="You are a global trend analyst.", plan=global_plan,
    assemble=lambda brief, done: GlobalTrends(
        regions=[done[f"region:{n}"].model_copy(update={"region": region})
                 for n, region in enumerate(brief.regions, 1)],
        synthesis=done["synthesis"]),
    description="Trends region by region, then a global synthesis; reads synced sources (LLM).",
)

generative(
    "GENERATE_FACEBOOK_TRENDS", payload=FacebookTrendsPayload, result=FacebookTrends,
    steps=["Facebook trends", "Post ideas"], sources=brief_sources,
    role="You are a Facebook marketing specialist.", plan=facebook_plan,
    assemble=lambda brief, done: FacebookTrends(trends=done["trends"].trends, posts=done["posts"].posts),
    description="Facebook engagement trends and a post idea for each; reads synced sources (LLM).",
)
