"""GENERATE_VIRAL_IDEAS and GENERATE_IDEAS_FROM_PRODUCT: content ideas in batches of 10, ranked."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .generation import Brief, Done, Part, batches, generative

BATCH = 10


class Idea(BaseModel):
    title: str
    hook: str
    format: str
    angle: str
    outline: list[str]
    score: int = Field(ge=1, le=10, description="Expected reach or fit, 1-10.")


class IdeaBatch(BaseModel):
    ideas: list[Idea]


class Angle(BaseModel):
    name: str
    why: str


class Angles(BaseModel):
    angles: list[Angle]


class ViralIdeasPayload(Brief):
    model_config = ConfigDict(title="Viral ideas")

    niche: str = Field(min_length=1, max_length=300)
    platform: str = Field("TikTok", max_length=100)
    audience: str = Field("", max_length=1000)
    count: int = Field(20, ge=1, le=100)


class ViralIdeas(BaseModel):
    angles: list[Angle]
    ideas: list[Idea]


class ProductIdeasPayload(Brief):
    model_config = ConfigDict(title="Ideas from a product")

    product_name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=4000)
    features: list[str] = Field(default_factory=list, max_length=30)
    audience: str = Field("", max_length=1000)
    url: str | None = Field(None, max_length=2000, description="Product page already read by SCRAPE_WEBSITE.")
    count: int = Field(20, ge=1, le=100)


class ProductAnalysis(BaseModel):
    unique_selling_points: list[str]
    pains_solved: list[str]
    objections: list[str]
    use_cases: list[str]


class ProductIdeas(BaseModel):
    analysis: ProductAnalysis
    ideas: list[Idea]


def idea_parts(count: int, step: str, describe: Callable[[int, int, Done], str]) -> list[Part]:
    def part(first: int, size: int) -> Part:
        return Part(f"ideas:{first}", step, IdeaBatch, lambda done: describe(first, size, done),
                    expect_chars=600 * size)
    return [part(first, size) for first, size in batches(count, BATCH)]


def ranked(count: int, done: Done) -> list[Idea]:
    ideas = [idea for first, _ in batches(count, BATCH) for idea in done[f"ideas:{first}"].ideas]
    return sorted(ideas, key=lambda idea: -idea.score)[:count]


def taken(done: Done) -> str:
    titles = [i.title for key, part in done.items() if key.startswith("ideas:") for i in part.ideas]
    return "; ".join(titles[-40:]) or "none"


def viral_plan(brief: ViralIdeasPayload) -> list[Part]:
    def describe(first: int, size: int, done: Done) -> str:
        angles = ", ".join(a.name for a in done["angles"].angles)
        return (f"Write ideas {first} to {first + size - 1} of {brief.count} for {brief.platform}: exactly {size}, "
                f"using the angles ({angles}), each with a scroll-stopping hook, a short outline and a 1-10 score "
                f"for how likely it spreads. Not these again: {taken(done)}.")

    return [Part("angles", "Angles", Angles,
                 f"Find 4-8 angles that make content in this niche spread on {brief.platform}, and why each works."),
            *idea_parts(brief.count, "Ideas", describe)]


def product_plan(brief: ProductIdeasPayload) -> list[Part]:
    def describe(first: int, size: int, done: Done) -> str:
        usps = "; ".join(done["analysis"].unique_selling_points)
        return (f"Write content ideas {first} to {first + size - 1} of {brief.count}: exactly {size}, each showing "
                f"one of these selling points ({usps}) through a pain, use case or objection, with a 1-10 score "
                f"for fit. Not these again: {taken(done)}.")

    return [Part("analysis", "Analyze product", ProductAnalysis,
                 "Analyse the product: unique selling points, pains it solves, likely objections and use cases."),
            *idea_parts(brief.count, "Ideas", describe)]


def product_sources(brief: ProductIdeasPayload) -> Sequence[str]:
    return [brief.url] if brief.url else []


generative(
    "GENERATE_VIRAL_IDEAS", payload=ViralIdeasPayload, result=ViralIdeas, steps=["Angles", "Ideas"],
    role="You are a creator-economy strategist who knows what spreads on each platform.", plan=viral_plan,
    assemble=lambda brief, done: ViralIdeas(angles=done["angles"].angles, ideas=ranked(brief.count, done)),
    description="Up to 100 content ideas built to spread, ranked (LLM).",
)

generative(
    "GENERATE_IDEAS_FROM_PRODUCT", payload=ProductIdeasPayload, result=ProductIdeas,
    steps=["Analyze product", "Ideas"], sources=product_sources,
    role="You are a product marketer who turns features into stories.", plan=product_plan,
    assemble=lambda brief, done: ProductIdeas(analysis=done["analysis"], ideas=ranked(brief.count, done)),
    description="Content ideas from a product's selling points, ranked; reads its scraped page if given (LLM).",
)
