"""GENERATE_BRAND_KIT: identity, voice and visual direction for a brand."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .generation import Brief, Done, Part, generative


class BrandKitPayload(Brief):
    model_config = ConfigDict(title="Brand kit")

    brand_name: str = Field(min_length=1, max_length=200)
    industry: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=4000, description="What the brand does and for whom.")
    audience: str = Field("", max_length=1000)
    values: list[str] = Field(default_factory=list, max_length=10)
    tone_hints: str = Field("", max_length=500, description="E.g. 'warm but expert, never salesy'.")


class Identity(BaseModel):
    mission: str
    vision: str
    positioning: str
    value_proposition: str
    elevator_pitch: str
    taglines: list[str]


class ToneRule(BaseModel):
    attribute: str
    meaning: str
    do: str
    dont: str


class Voice(BaseModel):
    personality: list[str]
    tone: list[ToneRule]
    words_to_use: list[str]
    words_to_avoid: list[str]
    sample_lines: list[str]


class Color(BaseModel):
    name: str
    hex: str = Field(description="#RRGGBB")
    usage: str


class Font(BaseModel):
    role: str = Field(description="headings, body, accent")
    family: str
    fallback: str


class Visuals(BaseModel):
    palette: list[Color]
    typography: list[Font]
    imagery: list[str]
    logo_concepts: list[str]


class BrandKit(BaseModel):
    brand_name: str
    identity: Identity
    voice: Voice
    visuals: Visuals


def plan(brief: BrandKitPayload) -> list[Part]:
    return [
        Part("identity", "Identity", Identity,
             "Define the brand's mission, vision, positioning, value proposition, a 3-sentence elevator pitch "
             "and 5 tagline options."),
        Part("voice", "Voice", Voice, lambda done: (
            f"Define the brand voice for this positioning: {positioning(done)}. Give 3-5 personality traits, "
            "3-5 tone rules (each with what it means, a do and a don't), words to use and to avoid, and 5 sample "
            "lines in that voice.")),
        Part("visuals", "Visuals", Visuals, lambda done: (
            f"Propose a visual direction that fits: {positioning(done)}. A palette of 5-6 colours with #RRGGBB hex "
            "codes and their use, typography (headings, body, accent) with fallbacks, imagery guidance and 3 logo "
            "concepts.")),
    ]


def positioning(done: Done) -> str:
    identity: Identity = done["identity"]
    return identity.positioning


def assemble(brief: BrandKitPayload, done: Done) -> BrandKit:
    return BrandKit(brand_name=brief.brand_name, identity=done["identity"], voice=done["voice"],
                    visuals=done["visuals"])


generative(
    "GENERATE_BRAND_KIT", payload=BrandKitPayload, result=BrandKit, steps=["Identity", "Voice", "Visuals"],
    role="You are a senior brand strategist and designer.", plan=plan, assemble=assemble,
    description="Brand identity, voice and visual direction (LLM).",
)
