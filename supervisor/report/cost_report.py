"""The `ao cost --json` document: pure aggregation of usage entries into priced rows."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from supervisor.observe import pricing, usage
from supervisor.sessions.query import UsageEntry, money

_GROUPS = ("session", "project", "model", "day", "month")


def build_report(entries: Iterable[UsageEntry], by: str, tz: dt.tzinfo | None,
                 since: str | None, until: str | None, table: Mapping[str, pricing.Price],
                 warnings: list[str] | None = None) -> dict[str, Any]:
    """Pure: (session key, project, model, bucket, tokens) entries in; the `ao cost --json` document out.

    One pass of plain lists and dicts: a cold `ao cost --all` builds a row per rollout (9,356 for a 1 GB
    history), and per-row dicts of per-model dicts cost more than the sums themselves.
    """
    if by not in _GROUPS:
        raise KeyError(by)
    dates: dict[str, str] = {}
    per_row: dict[str, dict[str, list[int]]] = {}   # key -> model -> [input, cached, output, reasoning]
    order: dict[str, str] = {}
    filtering = bool(since or until)
    for session, project, model, bucket, tokens in entries:
        day = dates.get(bucket)
        if day is None:
            day = dates[bucket] = usage.local_date(bucket, tz)
        if filtering and (day == "unknown" or (since and day < since) or (until and day > until)):
            continue
        if by == "session":
            key = session
        elif by == "project":
            key = project
        elif by == "model":
            key = model or "unknown"
        elif by == "day":
            key = day
        else:
            key = day[:7] if day != "unknown" else day
        first = bucket or "~"
        models = per_row.get(key)
        if models is None:
            models = per_row[key] = {}
            order[key] = first
        elif first < order[key]:
            order[key] = first
        i, c, o, r = int(tokens["input"]), int(tokens["cached_input"]), int(tokens["output"]), int(tokens["reasoning"])
        acc = models.get(model)
        if acc is None:
            models[model] = [i, c, o, r]
        else:
            acc[0] += i
            acc[1] += c
            acc[2] += o
            acc[3] += r
    prices: dict[str, pricing.Price | None] = {}
    rows: list[dict[str, Any]] = []
    unpriced: set[str] = set()
    total_cost = Decimal(0)
    ti = tc = to = tr = 0
    keys = sorted(per_row, key=lambda k: (order[k], k)) if by == "session" else sorted(per_row)
    for key in keys:
        models = per_row[key]
        ri = rc = ro = rr = 0
        cost = Decimal(0)
        for model, (i, c, o, r) in models.items():
            ri += i
            rc += c
            ro += o
            rr += r
            if model in prices:
                price = prices[model]
            else:
                price = prices[model] = pricing.lookup(table, model or None)
            if price is None:
                unpriced.add(model or "unknown")
            cost += pricing.cost(price, i, c, o)
        total_cost += cost
        ti, tc, to, tr = ti + ri, tc + rc, to + ro, tr + rr
        rows.append({"key": key, "tokens": {"input": ri, "cached_input": rc, "output": ro, "reasoning": rr,
                                            "total": ri + ro},
                     "cost_usd": money(cost), "models": sorted(m or "unknown" for m in models)})
    totals = {"input": ti, "cached_input": tc, "output": to, "reasoning": tr, "total": ti + to}
    return {"rows": rows, "totals": {"tokens": totals, "cost_usd": money(total_cost)},
            "unpriced_models": sorted(unpriced), "warnings": list(dict.fromkeys(warnings or []))}
