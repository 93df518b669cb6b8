"""Pure views: rows in, terminal text out. Every free-text cell goes through `printable`."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# C0 controls (tab too: it shifts columns), DEL, C1 controls (0x9b is a one-byte CSI), and the
# Unicode line separators and bidi overrides that reorder what the reader sees. Each becomes a
# visible escape, so a hostile PR url or branch cannot repaint, retitle or rearrange the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), 0x7f, *range(0x80, 0xa0)]}
_CONTROL.update({c: f"\\u{c:04x}" for c in [0x2028, 0x2029, *range(0x202a, 0x202f), *range(0x2066, 0x206a)]})


def printable(text: object) -> str:
    """`text` with every control character (ESC, CSI, BEL, CR, backspace, tab, ...) shown as `\\xNN`."""
    return str(text).translate(_CONTROL)


# Sessions that need a human come first, most urgent first; the rest keep their order (spawn order).
ATTENTION_ORDER = ("approval", "budget", "stalled", "failed", "input")


def needs_human_first(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pure and stable: rows with an `attention` first, by urgency."""
    def rank(row: Mapping[str, Any]) -> int:
        attention = row.get("attention")
        return ATTENTION_ORDER.index(attention) if attention in ATTENTION_ORDER else len(ATTENTION_ORDER)
    return sorted(rows, key=rank)


def status_table(rows: Iterable[Mapping[str, Any]]) -> str:
    from tabulate import tabulate  # lazy: JSON output never needs it
    body = [[printable(r["session"]), printable(r["status"]), printable(r.get("attention") or "-"),
             printable(r["activity"] or "-") + ("" if r.get("jailed", True) else " UNJAILED"),
             printable(r["branch"] or "-"), printable(r["model"] or "-"),
             f"{r['tokens']['total']:,}", f"${r['cost_usd']:.4f}", printable(r["pr_url"] or "-"),
             printable((r["thread_id"] or "-")[:13])] for r in needs_human_first(rows)]
    table = tabulate(body, headers=["SESSION", "STATUS", "ATTENTION", "ACTIVITY", "BRANCH", "MODEL", "TOKENS",
                                    "COST", "PR", "THREAD"], tablefmt="simple", disable_numparse=True)
    # the reason under the table, so a stalled or failed row says why without widening every row
    reasons = [f"{printable(r['session'])}: {printable(_short(r.get('error')))}"
               for r in needs_human_first(rows) if r.get("attention") in ("stalled", "failed", "budget")
               and r.get("error")]
    return table + ("\n\n" + "\n".join(reasons) if reasons else "")


def _short(text: object, limit: int = 160) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[:limit - 1] + "…"


def cost_table(rows: Iterable[Mapping[str, Any]], totals: Mapping[str, Any]) -> str:
    from tabulate import tabulate
    body = [[printable(r["key"]), printable(",".join(r["models"]) or "-"),
             f"{r['tokens']['input']:,}", f"{r['tokens']['cached_input']:,}",
             f"{r['tokens']['output']:,}", f"{r['tokens']['reasoning']:,}", f"{r['tokens']['total']:,}",
             f"${r['cost_usd']:.4f}"] for r in rows]
    t = totals["tokens"]
    body.append(["TOTAL", "", f"{t['input']:,}", f"{t['cached_input']:,}", f"{t['output']:,}",
                 f"{t['reasoning']:,}", f"{t['total']:,}", f"${totals['cost_usd']:.4f}"])
    return tabulate(body, headers=["KEY", "MODELS", "INPUT", "CACHED", "OUTPUT", "REASONING", "TOTAL", "COST"],
                    tablefmt="simple", disable_numparse=True)
