"""GENERATE_FUNNEL_CAMPAIGN: a campaign strategy, then the assets of each funnel stage."""
from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from .generation import Brief, Done, Part, generative


class FunnelPayload(Brief):
    model_config = ConfigDict(title="Funnel campaign")

    product: str = Field(min_length=1, max_length=2000)
    offer: str = Field("", max_length=500, description="E.g. '14-day free trial'.")
    audience: str = Field(min_length=1, max_length=1000)
    budget_usd: float | None = Field(None, ge=0)
    channels: list[str] = Field(default_factory=lambda: ["Meta ads", "Google ads", "Email"], min_length=1,
                                max_length=10)
    stages: list[str] = Field(default_factory=lambda: ["Awareness", "Consideration", "Conversion", "Retention"],
                              min_length=1, max_length=8)


class CampaignStrategy(BaseModel):
    big_idea: str
    positioning: str
    audience_insight: str
    kpis: list[str]


class Asset(BaseModel):
    channel: str
    format: str
    headline: str
    copy_text: str
    call_to_action: str


class Stage(BaseModel):
    stage: str
    goal: str
    message: str
    assets: list[Asset]
    kpi: str
    budget_percent: float = Field(ge=0, le=100)


class FunnelCampaign(BaseModel):
    strategy: CampaignStrategy
    stages: list[Stage]


def stage_ask(brief: FunnelPayload, stage: str) -> Callable[[Done], str]:
    def ask(done: Done) -> str:
        strategy: CampaignStrategy = done["strategy"]
        budget = f" of a ${brief.budget_usd:,.0f} budget" if brief.budget_usd else ""
        return (f"Plan the {stage} stage of the funnel ({' > '.join(brief.stages)}) around the big idea "
                f"'{strategy.big_idea}': its goal, message, 2-4 assets on {', '.join(brief.channels)}, its KPI and "
                f"its share{budget} in percent.")
    return ask


def plan(brief: FunnelPayload) -> list[Part]:
    return [
        Part("strategy", "Strategy", CampaignStrategy,
             "Find the campaign's big idea, positioning, key audience insight and KPIs."),
        *[Part(f"stage:{n}", "Stages", Stage, stage_ask(brief, stage), expect_chars=2000)
          for n, stage in enumerate(brief.stages, 1)],
    ]


def assemble(brief: FunnelPayload, done: Done) -> FunnelCampaign:
    stages = [done[f"stage:{n}"].model_copy(update={"stage": stage}) for n, stage in enumerate(brief.stages, 1)]
    return FunnelCampaign(strategy=done["strategy"], stages=stages)


generative(
    "GENERATE_FUNNEL_CAMPAIGN", payload=FunnelPayload, result=FunnelCampaign, steps=["Strategy", "Stages"],
    role="You are a performance marketing strategist.", plan=plan, assemble=assemble,
    description="A funnel campaign: strategy, then messages and assets per stage (LLM).",
)
