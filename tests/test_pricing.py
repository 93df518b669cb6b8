"""The price lookup: normalised names, date suffixes, aliases, patterns; unknown names stay unpriced."""
from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from supervisor.observe import pricing


def shipped() -> dict[str, Any]:
    return json.loads(resources.files("supervisor.observe").joinpath("pricing.json").read_text())


@pytest.fixture(scope="module")
def table() -> dict[str, pricing.Price]:
    return pricing.load_table(None)


@pytest.mark.parametrize("name", ["GPT-5", "gpt-5", " Gpt-5 ", "openai/GPT-5", "gpt-5-2025-08-07", "GPT-5-20250807"])
def test_case_prefix_and_date_do_not_matter(table: dict[str, pricing.Price], name: str) -> None:
    assert pricing.lookup(table, name) == table["gpt-5"]


@pytest.mark.parametrize("name,expected", [
    ("gpt-4o", ("2.50", "1.25", "10.00")),
    ("gpt-4o-2024-08-06", ("2.50", "1.25", "10.00")),
    ("gpt-4.1-mini", ("0.40", "0.10", "1.60")),
    ("codex-mini-latest", ("1.50", "0.375", "6.00")),
    ("codex-mini", ("1.50", "0.375", "6.00")),          # alias
    ("o3-pro", ("20", "20", "80")),                      # no cached price published: billed as input
    ("gpt-5.1-codex-mini-20251113", ("0.25", "0.025", "2.00")),
])
def test_added_prices(table: dict[str, pricing.Price], name: str, expected: tuple[str, str, str]) -> None:
    assert pricing.lookup(table, name) == pricing.Price(*(Decimal(v) for v in expected))


@pytest.mark.parametrize("name", ["codex-auto-review", "gpt-5-codex-mini", "gpt-5.3-codex-spark", "gpt-oss-120b",
                                  "gpt-oss-20b", "gpt-7", "gpt", "", "   ", None, "*", "gpt-*", "gpt-5-codex-mini-xl",
                                  "gpt-5.1-codex-mini-2025", "gpt-5x", "o3-pro-max"])
def test_unknown_stays_unpriced(table: dict[str, pricing.Price], name: str | None) -> None:
    """Never guessed from a similar name: a prefix, a suffix or a wildcard is not a price."""
    assert pricing.lookup(table, name) is None
    assert pricing.cost(pricing.lookup(table, name), 10**6, 0, 10**6) == 0


def test_unpriced_list_gives_reasons() -> None:
    reasons = pricing.unpriced_reasons()
    assert {"codex-auto-review", "gpt-5-codex-mini", "gpt-5.3-codex-spark", "gpt-oss-*"} <= set(reasons)
    assert all(reasons.values())
    assert not set(reasons) & set(shipped()["models"])  # a name is priced or explained, not both


def test_shipped_table_is_well_formed() -> None:
    raw = shipped()
    assert raw["_source"]["url"].startswith("https://") and raw["_source"]["checked"]
    names = list(raw["models"]) + list(raw["aliases"])
    assert all(n == pricing.normalise(n) for n in names)  # keys are stored in lookup form
    assert all(t in raw["models"] for t in raw["aliases"].values())
    for p in raw["models"].values():
        assert set(p) == {"input", "cached_input", "output"}
        assert 0 <= p["cached_input"] <= p["input"] and p["output"] >= 0


def test_pattern_override_prices_a_family_and_the_narrowest_wins() -> None:
    t = pricing.load_table({"gpt-oss-*": {"input": 0.1, "output": 0.5},
                            "GPT-OSS-120B*": {"input": 0.2, "output": 0.9}})
    assert pricing.lookup(t, "gpt-oss-20b") == pricing.Price(Decimal("0.1"), Decimal("0.1"), Decimal("0.5"))
    assert pricing.lookup(t, "openai/GPT-OSS-120b") == pricing.Price(Decimal("0.2"), Decimal("0.2"), Decimal("0.9"))
    assert pricing.lookup(t, "gpt-oss") is None  # the glob needs the dash
    assert pricing.lookup(t, "gpt-5") == t["gpt-5"]  # exact names are untouched by patterns


def test_overrides_are_case_insensitive_and_follow_aliases() -> None:
    t = pricing.load_table({"House-Model": {"input": 3, "output": 9}, "CODEX-MINI-LATEST": {"input": 1}})
    assert pricing.lookup(t, "house-model") == pricing.Price(Decimal(3), Decimal(3), Decimal(9))
    # overriding the alias target reprices the alias; the missing fields keep the shipped value
    assert pricing.lookup(t, "codex-mini") == pricing.Price(Decimal(1), Decimal("0.375"), Decimal(6))
    own = pricing.load_table({"codex-mini": {"input": 7, "cached_input": 7, "output": 7}})
    assert pricing.lookup(own, "codex-mini") == pricing.Price(Decimal(7), Decimal(7), Decimal(7))
    assert pricing.lookup(own, "codex-mini-latest") == pricing.Price(Decimal("1.5"), Decimal("0.375"), Decimal(6))


def test_cost_formula() -> None:
    price = pricing.Price(Decimal("1.25"), Decimal("0.125"), Decimal(10))
    assert pricing.cost(price, 1_000_000, 400_000, 100_000) == Decimal("0.75") + Decimal("0.05") + Decimal(1)
    assert pricing.cost(price, 10, 50, 0) == Decimal("50") * Decimal("0.125") / pricing.MILLION  # cached > input
