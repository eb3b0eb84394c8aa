"""Built-in task types; importing this package registers them."""
from . import brand_kit, content_package, demo, funnel, ideas, media_plan, personas, refresh, rss, scrape, trends

__all__ = ["brand_kit", "content_package", "demo", "funnel", "ideas", "media_plan", "personas", "refresh", "rss",
           "scrape", "trends"]
