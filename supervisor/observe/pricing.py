"""Price token usage from the shipped table plus `pricing:` overrides. Unknown models cost 0 and are flagged.

How a model name finds its price (the same rule is in pricing.json `_rules` and the README):

1. Normalise: strip spaces, lower-case, drop a provider prefix (`OpenAI/GPT-5` -> `gpt-5`). Table keys,
   aliases and `pricing:` override keys are normalised the same way, so case never matters.
2. The exact name, then the name without a date suffix (`-2025-08-07`, `-20250807`, month-day `-0613`).
3. Pattern entries: a key containing `*` is an fnmatch glob (`gpt-oss-*`); the longest matching pattern
   wins, so a narrower pattern beats a wider one whatever the order they were written in.
4. Nothing else. A name that matches nothing (or is listed under `unpriced`) is unpriced: it costs $0
   and the report lists it, so a missing price is visible rather than guessed from a similar name.

`aliases` in pricing.json says which entry a name is billed as (`codex-mini` -> `codex-mini-latest`).
Aliases are resolved after overrides, so overriding the target reprices its aliases too, while
overriding the alias itself prices only the alias.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

MILLION = Decimal(1_000_000)
# a snapshot date at the end of a model name: -2025-08-07, -20250807 or the older month-day -0613
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|(?:0[1-9]|1[0-2])\d{2})$")


class Price(NamedTuple):  # a NamedTuple, not a dataclass: `ao status` must not import dataclasses
    input: Decimal
    cached_input: Decimal
    output: Decimal


def normalise(model: str) -> str:
    """`OpenAI/GPT-5 ` -> `gpt-5`: the form every table key and lookup uses."""
    return model.strip().lower().rsplit("/", 1)[-1]


def _price(raw: Mapping[str, Any]) -> Price:
    # str() first so 0.125 stays 0.125 and does not become a binary-float approximation
    return Price(*(Decimal(str(raw[k])) for k in ("input", "cached_input", "output")))


def _shipped() -> dict[str, Any]:
    # beside this module in every install; importlib.resources would cost `ao status` ~7 ms of imports
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pricing.json"), encoding="utf-8") as fh:
        return dict(json.load(fh))


def unpriced_reasons() -> dict[str, str]:
    """Names (or patterns) the shipped table leaves unpriced on purpose, with the reason."""
    return {normalise(k): str(v) for k, v in (_shipped().get("unpriced") or {}).items()}


def load_table(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Price]:
    """Shipped prices, then `pricing:` overrides (a missing field keeps the shipped one), then aliases."""
    raw = _shipped()
    table = {normalise(name): _price(p) for name, p in raw["models"].items()}
    for name, p in (overrides or {}).items():
        key = normalise(name)
        base = table.get(key)
        merged = {"input": p.get("input", base.input if base else 0),
                  "cached_input": p.get("cached_input", base.cached_input if base else p.get("input", 0)),
                  "output": p.get("output", base.output if base else 0)}
        table[key] = _price(merged)
    for alias, target in (raw.get("aliases") or {}).items():
        alias, target = normalise(alias), normalise(target)
        if alias not in table and target in table:
            table[alias] = table[target]
    return table


def _pattern(table: Mapping[str, Price], name: str) -> Price | None:
    matches = [k for k in table if "*" in k and fnmatch.fnmatchcase(name, k)]
    if not matches:
        return None
    # the most specific pattern: most literal characters, then the key itself for a stable tie-break
    best = max(matches, key=lambda k: (len(k.replace("*", "")), k))
    return table[best]


def lookup(table: Mapping[str, Price], model: str | None) -> Price | None:
    """The price `model` is billed at, by the rule in the module docstring; None when unpriced."""
    if not model or not model.strip():
        return None
    name = normalise(model)
    if "*" not in name and name in table:  # a name with * is a pattern, never a model
        return table[name]
    stem = _DATE_SUFFIX.sub("", name)
    if stem != name and stem in table:
        return table[stem]
    return _pattern(table, name) or (_pattern(table, stem) if stem != name else None)


def cost(price: Price | None, input_tokens: int, cached_input: int, output_tokens: int) -> Decimal:
    """(input − cached) × input + cached × cached price + output × output price, per 1M tokens."""
    if price is None:
        return Decimal(0)
    uncached = max(input_tokens - cached_input, 0)
    return (uncached * price.input + cached_input * price.cached_input + output_tokens * price.output) / MILLION
