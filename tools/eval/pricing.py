"""A cost estimate from token usage, at list prices per million tokens (USD).

Prices change; pass ``--price INPUT,OUTPUT`` to use your own. Cache writes cost 1.25 times the input
price and cache reads 0.1 times, as Anthropic prices 5-minute prompt caching.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.usage import Prices as TokenPrices
from bot.usage import TokenTotals

#: (input, output) USD per million tokens by model family, matched as a substring of the model name.
LIST_PRICES: dict[str, tuple[float, float]] = {
    "haiku": (1.0, 5.0),
    "sonnet": (3.0, 15.0),
    "opus": (5.0, 25.0),
}
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


@dataclass(frozen=True)
class Prices:
    input: float
    output: float
    source: str

    @property
    def per_kind(self) -> TokenPrices:
        """The same prices by token kind, as ``threadguard usage`` and the dashboard bill them."""
        return TokenPrices(self.input, self.output, self.input * CACHE_WRITE_FACTOR, self.input * CACHE_READ_FACTOR)

    def cost(self, tokens: TokenTotals) -> float:
        return round(self.per_kind.cost(tokens), 6)


def prices_for(model: str, offline: bool, override: str | None = None) -> Prices | None:
    """The prices to estimate with, or ``None`` when unknown (the cost is then not estimated)."""
    if override:
        try:
            inp, out = (float(x) for x in override.split(","))
        except ValueError as exc:
            raise ValueError("--price takes INPUT,OUTPUT in USD per million tokens, e.g. 3,15") from exc
        return Prices(inp, out, "given with --price")
    if offline:
        return Prices(0.0, 0.0, "offline demo model: no cost")
    name = model.lower()
    for family, (inp, out) in LIST_PRICES.items():
        if family in name:
            return Prices(inp, out, f"list price of Claude {family.title()} (USD/MTok {inp:g} in, {out:g} out)")
    return None
