"""The Python API: AsyncClient for async code, Client (the same methods, blocking) for pages and scripts."""
from .facade import AsyncClient, Client

__all__ = ["AsyncClient", "Client"]
