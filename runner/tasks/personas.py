"""AUTO_GENERATE_PERSONAS: audience segments, then personas in batches of 10 (up to 100)."""
from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from .generation import Brief, Done, Part, batches, generative

BATCH = 10


class PersonasPayload(Brief):
    model_config = ConfigDict(title="Personas")

    product: str = Field(min_length=1, max_length=2000)
    market: str = Field(min_length=1, max_length=500, description="Who buys it, and where.")
    count: int = Field(10, ge=1, le=100, description="How many personas.")


class Segment(BaseModel):
    name: str
    description: str
    share_percent: float = Field(ge=0, le=100)


class Segments(BaseModel):
    segments: list[Segment]


class Persona(BaseModel):
    name: str
    age: int = Field(ge=0, le=120)
    occupation: str
    location: str
    segment: str
    goals: list[str]
    pains: list[str]
    objections: list[str]
    channels: list[str]
    quote: str


class PersonaBatch(BaseModel):
    personas: list[Persona]


class Personas(BaseModel):
    segments: list[Segment]
    personas: list[Persona]


def plan(brief: PersonasPayload) -> list[Part]:
    return [
        Part("segments", "Segment audience", Segments,
             "Split the market into 3-6 segments with a description and their share of it (percent)."),
        *[Part(f"personas:{first}", "Generate personas", PersonaBatch, batch_ask(brief, first, size),
               expect_chars=700 * size) for first, size in batches(brief.count, BATCH)],
    ]


def batch_ask(brief: PersonasPayload, first: int, size: int) -> Callable[[Done], str]:
    def ask(done: Done) -> str:
        segments = ", ".join(s.name for s in done["segments"].segments)
        taken = [p.name for key, part in done.items() if key.startswith("personas:") for p in part.personas]
        return (f"Write personas {first} to {first + size - 1} of {brief.count}: exactly {size}, spread over the "
                f"segments ({segments}) in proportion to their share. Each needs a distinct name; already used: "
                f"{', '.join(taken) or 'none'}.")
    return ask


def assemble(brief: PersonasPayload, done: Done) -> Personas:
    people = [p for first, _ in batches(brief.count, BATCH) for p in done[f"personas:{first}"].personas]
    return Personas(segments=done["segments"].segments, personas=people[: brief.count])


generative(
    "AUTO_GENERATE_PERSONAS", payload=PersonasPayload, result=Personas,
    steps=["Segment audience", "Generate personas"], role="You are a market researcher who writes buyer personas.",
    plan=plan, assemble=assemble, description="Audience segments and up to 100 buyer personas, 10 at a time (LLM).",
)
