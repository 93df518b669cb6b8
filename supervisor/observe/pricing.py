"""Price token usage from the shipped table plus `pricing:` overrides. Unknown models cost 0 and are flagged."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    input: Decimal
    cached_input: Decimal
    output: Decimal


def _price(raw: Mapping[str, Any]) -> Price:
    # str() first so 0.125 stays 0.125 and does not become a binary-float approximation
    return Price(*(Decimal(str(raw[k])) for k in ("input", "cached_input", "output")))


def load_table(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Price]:
    raw = json.loads(resources.files("supervisor.observe").joinpath("pricing.json").read_text())
    table = {name: _price(p) for name, p in raw["models"].items()}
    for name, p in (overrides or {}).items():
        base = table.get(name)
        merged = {"input": p.get("input", base.input if base else 0),
                  "cached_input": p.get("cached_input", base.cached_input if base else p.get("input", 0)),
                  "output": p.get("output", base.output if base else 0)}
        table[name] = _price(merged)
    return table


def lookup(table: Mapping[str, Price], model: str | None) -> Price | None:
    """Exact name first, then the name without a date suffix or provider prefix (openai/gpt-5)."""
    if not model:
        return None
    if model in table:
        return table[model]
    name = model.split("/")[-1]
    if name in table:
        return table[name]
    parts = name.rsplit("-", 3)
    for cut in range(1, len(parts)):
        stem = "-".join(parts[:-cut])
        if stem in table and all(p.isdigit() for p in parts[-cut:]):
            return table[stem]
    return None


def cost(price: Price | None, input_tokens: int, cached_input: int, output_tokens: int) -> Decimal:
    """(input − cached) × input + cached × cached price + output × output price, per 1M tokens."""
    if price is None:
        return Decimal(0)
    uncached = max(input_tokens - cached_input, 0)
    return (uncached * price.input + cached_input * price.cached_input + output_tokens * price.output) / MILLION
