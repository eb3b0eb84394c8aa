"""The HTTP API (`python -m runner api`): runner's client over FastAPI, for services in any language."""
from .app import create_app

__all__ = ["create_app"]
