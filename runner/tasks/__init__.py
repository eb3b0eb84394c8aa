"""Built-in task types; importing this package registers them."""
from . import demo

__all__ = ["demo"]
