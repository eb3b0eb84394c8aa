"""GENERATE_CONTENT_PACKAGE: one topic as an outline, an article, social posts and an email."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .generation import Brief, Done, Part, generative


class ContentPackagePayload(Brief):
    model_config = ConfigDict(title="Content package")

    topic: str = Field(min_length=1, max_length=500)
    brand: str = Field("", max_length=200)
    audience: str = Field("", max_length=1000)
    channels: list[str] = Field(default_factory=lambda: ["LinkedIn", "X", "Instagram"], min_length=1, max_length=10)
    article_words: int = Field(900, ge=200, le=4000)
    tone: str = Field("clear and friendly", max_length=200)


class Section(BaseModel):
    heading: str
    points: list[str]


class Outline(BaseModel):
    title: str
    angle: str
    sections: list[Section]
    keywords: list[str]


class Article(BaseModel):
    title: str
    meta_description: str
    body_markdown: str


class SocialPost(BaseModel):
    channel: str
    text: str
    hashtags: list[str]


class SocialPosts(BaseModel):
    posts: list[SocialPost]


class Email(BaseModel):
    subject: str
    preview_text: str
    body_markdown: str


class ContentPackage(BaseModel):
    outline: Outline
    article: Article
    social_posts: list[SocialPost]
    email: Email


def outline_of(done: Done) -> str:
    outline: Outline = done["outline"]
    return f"'{outline.title}' ({outline.angle}); sections: " + "; ".join(s.heading for s in outline.sections)


def plan(brief: ContentPackagePayload) -> list[Part]:
    return [
        Part("outline", "Outline", Outline,
             "Choose the angle and title, outline 4-7 sections with their key points, and list SEO keywords."),
        Part("article", "Article", Article, lambda done: (
            f"Write the article of about {brief.article_words} words in Markdown, following this outline: "
            f"{outline_of(done)}. Tone: {brief.tone}."), expect_chars=6 * brief.article_words),
        Part("social", "Social posts", SocialPosts, lambda done: (
            f"Write 2 posts for each of {', '.join(brief.channels)} promoting the article {outline_of(done)}, each "
            "in that channel's style and length.")),
        Part("email", "Email", Email, lambda done: (
            f"Write a newsletter email that leads readers to the article {outline_of(done)}.")),
    ]


def assemble(brief: ContentPackagePayload, done: Done) -> ContentPackage:
    return ContentPackage(outline=done["outline"], article=done["article"], social_posts=done["social"].posts,
                          email=done["email"])


generative(
    "GENERATE_CONTENT_PACKAGE", payload=ContentPackagePayload, result=ContentPackage,
    steps=["Outline", "Article", "Social posts", "Email"], role="You are a senior content marketer and copywriter.",
    plan=plan, assemble=assemble, description="Outline, article, social posts and an email on one topic (LLM).",
)
