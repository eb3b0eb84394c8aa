"""What a call costs, from the per-model price table in Settings.llm_prices (USD per million tokens)."""
from __future__ import annotations

from collections.abc import Mapping

Prices = Mapping[str, tuple[float, float]]


def price(prices: Prices, model: str) -> tuple[float, float] | None:
    """(input, output) price of `model`: the entry whose name is its longest prefix, so a dated release
    (gpt-4o-mini-2024-07-18) takes its family's price and gpt-4o-mini never takes gpt-4o's."""
    name = model.lower().removeprefix("models/")
    matches = [key for key in prices if name.startswith(key.lower())]
    return prices[max(matches, key=len)] if matches else None


def cost(prices: Prices, model: str, tokens_in: int, tokens_out: int) -> float:
    found = price(prices, model)
    if found is None:
        return 0.0
    return round((tokens_in * found[0] + tokens_out * found[1]) / 1_000_000, 8)
