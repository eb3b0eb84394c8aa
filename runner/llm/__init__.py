"""LLM calls for the generative task types, on the official `openai` SDK pointed at any OpenAI-compatible
endpoint (OpenAI, Gemini's OpenAI-compatible endpoint, Ollama, vLLM) by `Settings.llm_base_url`; without one,
at the embedded demo model (`embedded`: SmolLM2-135M-Instruct on llama.cpp, `serve` and `engine`), which is
such an endpoint on loopback.

This package's own import is light; `client` pulls in the SDK, so task modules import it when they run.
"""
from __future__ import annotations

from urllib.parse import urlsplit

LLM_SETTINGS = ("llm_base_url", "llm_model")


def endpoint_id(base_url: str) -> str:
    """The endpoint's name in Redis keys and on the Workers page: host, port and path, no credentials."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path.rstrip('/')}"
