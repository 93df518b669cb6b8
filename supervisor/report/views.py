"""Pure views: rows in, terminal text out. Every free-text cell goes through `printable`."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

# C0 controls (tab too: it shifts columns), DEL, C1 controls (0x9b is a one-byte CSI), and the
# Unicode line separators and bidi overrides that reorder what the reader sees. Each becomes a
# visible escape, so a hostile PR url or branch cannot repaint, retitle or rearrange the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), 0x7f, *range(0x80, 0xa0)]}
_CONTROL.update({c: f"\\u{c:04x}" for c in [0x2028, 0x2029, *range(0x202a, 0x202f), *range(0x2066, 0x206a)]})


def printable(text: object) -> str:
    """`text` with every control character (ESC, CSI, BEL, CR, backspace, tab, ...) shown as `\\xNN`."""
    return str(text).translate(_CONTROL)


# Sessions that need a human come first, most urgent first; then the newest first.
ATTENTION_ORDER = ("approval", "budget", "stalled", "failed", "input")


def needs_human_first(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pure: rows with an `attention` first, by urgency; within each group the newest first (smallest age)."""
    def rank(row: Mapping[str, Any]) -> tuple[int, float]:
        attention = row.get("attention")
        urgency = ATTENTION_ORDER.index(attention) if attention in ATTENTION_ORDER else len(ATTENTION_ORDER)
        age = row.get("age_s")
        return urgency, float(age) if isinstance(age, (int, float)) else float("inf")
    return sorted(rows, key=rank)


class Column(NamedTuple):
    header: str
    cell: Callable[[Mapping[str, Any]], str]
    right: bool = False  # numbers line up on the right


def _cut(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[:max(1, limit - 1)] + "…"


def _usd(value: float, budget: float) -> str:
    return f"${value:.2f}" if budget >= 0.1 else f"${value:.4f}"


def budget_cell(row: Mapping[str, Any]) -> str:
    """`$0.08/$0.10`, with `!` once spend reaches 80% of the budget; `-` without a budget."""
    budget = row.get("budget_usd")
    if budget is None:
        return "-"
    spent = max(row.get("spent_usd") or 0.0, row.get("cost_usd") or 0.0)
    return f"{_usd(spent, budget)}/{_usd(budget, budget)}" + ("!" if row.get("budget_warning") else "")


def pr_cell(row: Mapping[str, Any]) -> str:
    number = row.get("pr_number")
    if isinstance(number, int) and not isinstance(number, bool):
        return f"#{number}"
    return printable(row.get("pr_url") or "-")


def _columns(limit: int | None) -> dict[str, Column]:
    """Every status column, widest layout; free-text cells are cut to `limit` characters when space is short."""
    from supervisor.sessions.fleet import age_text

    def text(key: str, cut: int | None = None) -> Callable[[Mapping[str, Any]], str]:
        return lambda r: _cut(printable(r.get(key) or "-"), cut)

    def activity(r: Mapping[str, Any]) -> str:
        return printable(r.get("activity") or "-")

    def status(r: Mapping[str, Any]) -> str:
        # an unjailed run is a fact the operator must see in every layout, so it rides on the status
        return printable(r.get("status") or "-") + ("" if r.get("jailed", True) else " UNJAILED")

    return {
        "session": Column("SESSION", text("session")),
        "name": Column("NAME", text("name", limit)),
        "project": Column("PROJECT", text("project", limit)),
        "status": Column("STATUS", status),
        "attention": Column("ATTENTION", text("attention")),
        "activity": Column("ACTIVITY", activity),
        "age": Column("AGE", lambda r: age_text(r.get("age_s")), right=True),
        "branch": Column("BRANCH", text("branch", limit)),
        "model": Column("MODEL", text("model", limit)),
        "tokens": Column("TOKENS", lambda r: f"{(r.get('tokens') or {}).get('total', 0):,}", right=True),
        "cost": Column("COST", lambda r: f"${r.get('cost_usd') or 0:.4f}", right=True),
        "budget": Column("BUDGET", budget_cell, right=True),
        "pr": Column("PR", lambda r: _cut(pr_cell(r), limit)),
        "thread": Column("THREAD", lambda r: printable((r.get("thread_id") or "-")[:13])),
    }


WIDE = ("session", "name", "project", "status", "attention", "activity", "age", "branch", "model", "tokens",
        "cost", "budget", "pr", "thread")
# When the terminal is narrow, columns go in this order until the table fits; these never go.
DROP_ORDER = ("thread", "model", "branch", "activity", "project", "name", "pr", "budget", "tokens", "age")


def _render(columns: list[Column], body: list[list[str]], more: str | None) -> list[str]:
    """tabulate's "simple" layout: two spaces between columns, dashes under the headers."""
    widths = [max(len(c.header), *(len(cells[i]) for cells in body)) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if c.right else cell.ljust(w)
                         for cell, w, c in zip(cells, widths, columns)).rstrip()
    lines = [line([c.header for c in columns]), line(["-" * w for w in widths])]
    lines += [line(cells) for cells in body[:-1]]
    if more:
        lines.append(more)
    lines.append(line(body[-1]))  # the totals row stays last, under any "… N more"
    return lines


def _table_width(columns: list[Column], body: list[list[str]]) -> int:
    widths = [max(len(c.header), *(len(cells[i]) for cells in body)) for i, c in enumerate(columns)]
    return sum(widths) + 2 * (len(widths) - 1)


def clip(line: str, width: int | None) -> str:
    """One terminal line at most `width` characters, so nothing wraps."""
    return line if width is None or len(line) <= width else line[:max(1, width - 1)] + "…"


def status_table(rows: Iterable[Mapping[str, Any]], width: int | None = None, max_lines: int | None = None) -> str:
    """The `ao status` table: needs-a-human first, a totals row, the reasons for stalled/failed/budget below.

    `width` (terminal columns) picks the layout: columns are dropped (DROP_ORDER) until the table fits,
    then any line still too long is cut, so a narrow terminal never wraps. `max_lines` (a watch pane's
    height) keeps the header and the totals and replaces the rows that do not fit with "… N more".
    """
    ordered = needs_human_first(rows)
    names = [n for n in WIDE if n != "budget" or any(r.get("budget_usd") is not None for r in ordered)]
    columns_by_name = _columns(None if width is None else 24)
    shown = ordered
    more = None
    if max_lines is not None:
        room = max(0, max_lines - 3)  # header, dashes and totals always show
        if len(ordered) > room:
            shown = ordered[:max(0, room - 1)]
            more = f"… {len(ordered) - len(shown)} more"
    totals = _totals(ordered)

    def body_of(selected: list[str]) -> tuple[list[Column], list[list[str]]]:
        cols = [columns_by_name[n] for n in selected]
        body = [[c.cell(r) for c in cols] for r in shown]
        body.append([totals.get(n, "") for n in selected])
        return cols, body

    columns, body = body_of(names)
    for name in DROP_ORDER:
        if width is None or _table_width(columns, body) <= width:
            break
        names = [n for n in names if n != name]
        columns, body = body_of(names)
    lines = _render(columns, body, more)
    # the reason under the table, so a stalled or failed row says why without widening every row
    reasons = [f"{printable(r['session'])}: {printable(_short(r.get('error')))}"
               for r in ordered if r.get("attention") in ("stalled", "failed", "budget") and r.get("error")]
    if reasons and (max_lines is None or len(lines) + 1 + len(reasons) <= max_lines):
        lines += ["", *reasons]
    return "\n".join(clip(line, width) for line in lines)


def _totals(rows: list[Mapping[str, Any]]) -> dict[str, str]:
    tokens = sum(int((r.get("tokens") or {}).get("total", 0)) for r in rows)
    cost = sum(float(r.get("cost_usd") or 0.0) for r in rows)
    count = len(rows)
    return {"session": f"TOTAL {count} session{'s' if count != 1 else ''}", "tokens": f"{tokens:,}",
            "cost": f"${cost:.4f}"}


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
