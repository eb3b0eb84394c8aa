"""The Python API: AsyncClient for async code, Client (the same methods, blocking) for pages and scripts."""
from .blocking import Client
from .facade import AsyncClient

__all__ = ["AsyncClient", "Client"]
