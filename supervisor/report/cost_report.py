"""The `ao cost --json` document: pure aggregation of usage entries into priced rows."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from supervisor.observe import pricing, usage
from supervisor.sessions.query import UsageEntry, money


def _local_date(bucket: str, tz: dt.tzinfo | None, cache: dict[str, str]) -> str:
    found = cache.get(bucket)
    if found is None:
        found = cache[bucket] = usage.local_date(bucket, tz)
    return found


def build_report(entries: Iterable[UsageEntry], by: str, tz: dt.tzinfo | None,
                 since: str | None, until: str | None, table: Mapping[str, pricing.Price],
                 warnings: list[str] | None = None) -> dict[str, Any]:
    """Pure: (session key, project, model, bucket, tokens) entries in; the `ao cost --json` document out."""
    dates: dict[str, str] = {}
    per_row: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(usage.empty_tokens))
    order: dict[str, str] = {}
    for session, project, model, bucket, tokens in entries:
        day = _local_date(bucket, tz, dates)
        if (since or until) and (day == "unknown" or (since and day < since) or (until and day > until)):
            continue
        key = {"session": session, "project": project, "model": model or "unknown",
               "day": day, "month": day[:7] if day != "unknown" else day}[by]
        usage.add_tokens(per_row[key][model], tokens)
        order[key] = min(order.get(key, bucket or "~"), bucket or "~")
    rows: list[dict[str, Any]] = []
    total_models: dict[str, dict[str, int]] = defaultdict(usage.empty_tokens)
    unpriced: set[str] = set()
    total_cost = Decimal(0)
    keys = sorted(per_row, key=lambda k: (order[k], k)) if by == "session" else sorted(per_row)
    for key in keys:
        tokens, cost, missing = usage.price_models(per_row[key], table)
        unpriced.update(missing)
        total_cost += cost
        for model, t in per_row[key].items():
            usage.add_tokens(total_models[model], t)
        rows.append({"key": key, "tokens": tokens, "cost_usd": money(cost),
                     "models": sorted(m or "unknown" for m in per_row[key])})
    totals, _, _ = usage.price_models(total_models, table)
    return {"rows": rows, "totals": {"tokens": totals, "cost_usd": money(total_cost)},
            "unpriced_models": sorted(unpriced), "warnings": list(dict.fromkeys(warnings or []))}
