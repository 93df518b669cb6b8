"""Pure views: session records in, contract dicts and tables out."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Iterable, Mapping


STATUS_KEYS = ("session", "project", "issue", "workspace", "runtime", "status", "activity", "branch",
               "pr_url", "pr_number", "thread_id", "model", "tokens", "cost_usd", "pid", "rollout_path",
               "started_at", "updated_at")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def money(value: Decimal) -> float:
    return float(round(value, 6))


def status_row(record: Mapping[str, Any], tokens: Mapping[str, int], cost: Decimal) -> dict[str, Any]:
    """The public `ao status --json` row; tokens and cost come priced per response from the rollout."""
    row: dict[str, Any] = {key: record.get(key) for key in STATUS_KEYS}
    row["tokens"] = dict(tokens)
    row["cost_usd"] = money(cost)
    row["started_at"] = iso(record.get("started_at"))
    row["updated_at"] = iso(record.get("updated_at"))
    return row


def status_table(rows: Iterable[Mapping[str, Any]]) -> str:
    from tabulate import tabulate  # lazy: JSON output never needs it
    body = [[r["session"], r["status"], r["activity"] or "-", r["branch"] or "-", r["model"] or "-",
             f"{r['tokens']['total']:,}", f"${r['cost_usd']:.4f}", r["pr_url"] or "-",
             (r["thread_id"] or "-")[:13]] for r in rows]
    return tabulate(body, headers=["SESSION", "STATUS", "ACTIVITY", "BRANCH", "MODEL", "TOKENS", "COST",
                                   "PR", "THREAD"], tablefmt="simple", disable_numparse=True)


def cost_table(rows: Iterable[Mapping[str, Any]], totals: Mapping[str, Any]) -> str:
    from tabulate import tabulate
    body = [[r["key"], ",".join(r["models"]) or "-", f"{r['tokens']['input']:,}", f"{r['tokens']['cached_input']:,}",
             f"{r['tokens']['output']:,}", f"{r['tokens']['reasoning']:,}", f"{r['tokens']['total']:,}",
             f"${r['cost_usd']:.4f}"] for r in rows]
    t = totals["tokens"]
    body.append(["TOTAL", "", f"{t['input']:,}", f"{t['cached_input']:,}", f"{t['output']:,}",
                 f"{t['reasoning']:,}", f"{t['total']:,}", f"${totals['cost_usd']:.4f}"])
    return tabulate(body, headers=["KEY", "MODELS", "INPUT", "CACHED", "OUTPUT", "REASONING", "TOTAL", "COST"],
                    tablefmt="simple", disable_numparse=True)


def printable(text: object) -> str:  # TEMP stub for isolated testing
    return str(text)
