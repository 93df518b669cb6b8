"""HTML for the dashboard: pure functions from rows and reports to text. Everything shown is escaped.

Agents write much of what is shown (names, commands, receipts), so nothing here trusts a value: every
string goes through `esc`, and the page's Content-Security-Policy allows only our own scripts.
Charts are server-side SVG: no chart library to vendor, they work without JavaScript, and the numbers
on them are the report's own numbers, formatted here.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

COLUMNS = ("name", "project", "status", "attention", "activity", "branch", "PR", "tokens", "cost", "age", "node")
STATIC_ASSETS = ("vendor/htmx.min.js", "vendor/htmx-sse.js", "app.js")
HTMX_CONFIG = json.dumps({"includeIndicatorStyles": False, "allowEval": False, "selfRequestsOnly": True,
                          "responseHandling": [{"code": "204", "swap": False}, {"code": ".*", "swap": True}]})


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def money(value: Any) -> str:
    return f"${float(value or 0):.4f}"


def tokens_text(tokens: Mapping[str, Any] | None) -> str:
    total = int((tokens or {}).get("total") or 0)
    return f"{total / 1000:.1f}k" if total >= 10000 else str(total)


def age_text(seconds: Any) -> str:
    from supervisor.sessions.fleet import age_text as fleet_age

    return fleet_age(None if seconds is None else float(seconds))


def page(title: str, body: str, csrf: str, extra_head: str = "") -> str:
    scripts = "".join(f'<script src="/static/{a}" defer></script>' for a in STATIC_ASSETS)
    headers = esc(json.dumps({"X-CSRF-Token": csrf}))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · ao</title>"
        f'<meta name="htmx-config" content="{esc(HTMX_CONFIG)}">'
        f'<meta name="csrf-token" content="{esc(csrf)}">'
        '<link rel=stylesheet href="/static/app.css">' + extra_head + scripts + "</head>"
        f'<body hx-headers="{headers}"><header><a class=brand href="/">ao</a>'
        '<nav><a href="/">board</a><a href="/cost">cost</a></nav></header>'
        f'<div id=flash aria-live=polite></div><main>{body}</main></body></html>')


def flash(text: str, ok: bool = True) -> str:
    return f'<div class="flash {"ok" if ok else "bad"}">{esc(text)}</div>'


def session_link(row: Mapping[str, Any]) -> str:
    sid = str(row.get("session") or "")
    return f'<a href="/session/{quote(sid, safe="")}">{esc(row.get("name") or sid)}</a>'


def pr_cell(row: Mapping[str, Any]) -> str:
    number, url = row.get("pr_number"), row.get("pr_url")
    if not url:
        return ""
    text = f"#{number}" if number else "PR"
    href = str(url)
    if not href.startswith(("https://", "http://")):
        return esc(text)
    return f'<a href="{esc(href)}" rel="noreferrer noopener" target=_blank>{esc(text)}</a>'


def board_row(row: Mapping[str, Any]) -> str:
    attention = row.get("attention")
    cells = [session_link(row), esc(row.get("project")),
             f'<span class="status s-{esc(row.get("status"))}">{esc(row.get("status"))}</span>',
             f'<span class="attention">{esc(attention)}</span>' if attention else "",
             esc(row.get("activity")), esc(row.get("branch")), pr_cell(row),
             esc(tokens_text(row.get("tokens"))), esc(money(row.get("cost_usd"))), esc(age_text(row.get("age_s"))),
             esc(row.get("node"))]
    cls = "needs" if attention else ""
    return (f'<tr id="row-{esc(row.get("session"))}" class="{cls}" data-session="{esc(row.get("session"))}" '
            f'data-status="{esc(row.get("status"))}" data-attention="{esc(attention)}">'
            + "".join(f'<td class="c-{c.lower()}">{cell}</td>' for c, cell in zip(COLUMNS, cells)) + "</tr>")


def board_body(rows: Sequence[Mapping[str, Any]], error: str | None = None) -> str:
    """The table body the live stream replaces whole: rows first, then totals."""
    if not rows:
        return f'<tr><td colspan={len(COLUMNS)} class=empty>no sessions match; start one with `ao spawn`</td></tr>'
    body = "".join(board_row(r) for r in rows)
    cost = sum(float(r.get("cost_usd") or 0) for r in rows)
    tokens = sum(int((r.get("tokens") or {}).get("total") or 0) for r in rows)
    body += (f'<tr class=totals><td>{len(rows)} session{"s" if len(rows) != 1 else ""}</td>'
             f'<td colspan=6></td><td>{esc(tokens_text({"total": tokens}))}</td><td>{esc(money(cost))}</td>'
             "<td colspan=2></td></tr>")
    if error:
        body += f'<tr><td colspan={len(COLUMNS)} class=bad>store unreadable: {esc(error)}</td></tr>'
    return body


def approvals_block(approvals: Sequence[Mapping[str, Any]]) -> str:
    if not approvals:
        return '<p class="muted">no tool call waits for approval</p>'
    out = []
    for a in approvals:
        aid = str(a.get("id") or "")
        target = quote(aid, safe="")
        why = a.get("reason") or a.get("rule_reason") or ""
        out.append(
            f'<div class=approval id="approval-{esc(aid)}" data-approval="{esc(aid)}">'
            f'<div class=meta>session <a href="/session/{quote(str(a.get("session") or ""), safe="")}">'
            f'{esc(a.get("session"))}</a> · {esc(aid)}{(" · " + esc(why)) if why else ""}</div>'
            f'<pre class=command>{esc(a.get("command_text"))}</pre>'
            f'<form hx-post="/approval/{target}/approve" hx-target="#flash" class=inline>'
            '<button class="approve" type=submit>approve</button></form>'
            f'<form hx-post="/approval/{target}/deny" hx-target="#flash" class=inline>'
            '<input name=reason placeholder="reason (told to the agent)" maxlength=500>'
            '<button class="deny" type=submit>deny</button></form></div>')
    return "".join(out)


def board(rows: Sequence[Mapping[str, Any]], approvals: Sequence[Mapping[str, Any]], filters: Any,
          projects: Iterable[str], stream_query: str, error: str | None = None) -> str:
    options = "".join(f'<option value="{esc(p)}"{" selected" if p == filters.project else ""}>{esc(p)}</option>'
                      for p in sorted(set(projects)))
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    stream = "/events/board" + ("?" + stream_query if stream_query else "")
    return (
        '<form class=filters method=get action="/">'
        f'<label><input type=checkbox name=active value=1{" checked" if filters.active else ""}> active</label>'
        f'<label><input type=checkbox name=attention value=1{" checked" if filters.attention else ""}> '
        'needs attention</label>'
        f'<label>project <select name=project><option value="">all</option>{options}</select></label>'
        '<button type=submit>filter</button></form>'
        f'<div hx-ext=sse sse-connect="{esc(stream)}">'
        '<h2>approvals</h2>'
        f'<section id=approvals sse-swap=approvals>{approvals_block(approvals)}</section>'
        '<h2>sessions</h2>'
        f'<table class=board><thead><tr>{head}</tr></thead>'
        f'<tbody id=board sse-swap=board>{board_body(rows, error)}</tbody></table></div>')


def _fields(row: Mapping[str, Any]) -> str:
    pairs = [("session", row.get("session")), ("name", row.get("name")), ("project", row.get("project")),
             ("status", row.get("status")), ("attention", row.get("attention")), ("activity", row.get("activity")),
             ("runtime", row.get("runtime")), ("branch", row.get("branch")), ("tokens", tokens_text(row.get("tokens"))),
             ("cost", money(row.get("cost_usd"))), ("budget", money(row["budget_usd"]) if row.get("budget_usd")
                                                     is not None else None),
             ("age", age_text(row.get("age_s"))), ("node", row.get("node")), ("thread", row.get("thread_id")),
             ("workspace", row.get("workspace"))]
    cells = "".join(f"<dt>{esc(k)}</dt><dd class=f-{esc(k)}>{esc(v)}</dd>" for k, v in pairs if v not in (None, ""))
    cells += f"<dt>PR</dt><dd>{pr_cell(row)}</dd>" if row.get("pr_url") else ""
    error = row.get("error")
    err = f'<div class="error"><b>error</b><pre>{esc(error)}</pre></div>' if error else ""
    return f"<dl class=fields>{cells}</dl>{err}"


def receipts_table(receipts: Sequence[Mapping[str, Any]], warnings: Sequence[str]) -> str:
    rows = []
    for r in receipts[-500:]:  # the newest; `ao receipts` has all of them
        kind = r.get("kind")
        what = r.get("tool") or r.get("event") or ""
        detail = r.get("arguments") if kind == "tool_call" else (r.get("detail") or {})
        text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True, default=str)
        outcome = r.get("exit_code") if kind == "tool_call" else r.get("decision")
        rows.append(f'<tr class="k-{esc(kind)}"><td>{esc(r.get("at"))}</td><td>{esc(kind)}</td><td>{esc(what)}</td>'
                    f'<td>{esc(outcome)}</td><td><code>{esc(text[:2000])}</code></td></tr>')
    notes = "".join(f'<p class=muted>{esc(w)}</p>' for w in warnings)
    if not rows:
        return notes + '<p class=muted>no receipts yet</p>'
    return (notes + "<table class=receipts><thead><tr><th>at</th><th>kind</th><th>what</th><th>outcome</th>"
            f"<th>detail</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def session_live(row: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]],
                 receipts: Sequence[Mapping[str, Any]], warnings: Sequence[str]) -> dict[str, str]:
    """The parts of a session page the live stream replaces, by SSE event name."""
    return {"summary": _fields(row), "approvals": approvals_block(approvals),
            "receipts": receipts_table(receipts, warnings)}


def session_page(row: Mapping[str, Any], live: Mapping[str, str], cost_points: Sequence[tuple[str, float]],
                 terminal: bool, live_ok: bool) -> str:
    sid = quote(str(row.get("session") or ""), safe="")
    view = (f'<div id=terminal data-src="/session/{sid}/terminal"></div>' if terminal else
            f'<div id=events class=events data-src="/session/{sid}/events"></div>')
    return (
        f'<h1>{esc(row.get("name") or row.get("session"))}</h1>'
        f'<div hx-ext=sse sse-connect="/session/{sid}/live">'
        f'<section id=summary sse-swap=summary>{live["summary"]}</section>'
        '<div class=actions>'
        f'<form hx-post="/session/{sid}/kill" hx-target="#flash" hx-confirm="Kill this session?" class=inline>'
        f'<button class=deny type=submit{"" if live_ok else " disabled"}>kill</button></form>'
        f'<form hx-post="/session/{sid}/resume" hx-target="#flash" class=inline>'
        f'<button type=submit{" disabled" if live_ok else ""}>resume</button></form></div>'
        f'<form hx-post="/session/{sid}/send" hx-target="#flash" class=send>'
        '<textarea name=message required maxlength=20000 placeholder="message to the agent (ao send)"></textarea>'
        '<button type=submit>send</button></form>'
        f'<h2>approvals</h2><section id=approvals sse-swap=approvals>{live["approvals"]}</section>'
        f'<h2>{"terminal" if terminal else "events"}</h2>{view}'
        f'<h2>cost over time</h2>{line_chart(cost_points)}'
        f'<h2>receipts</h2><section id=receipts sse-swap=receipts>{live["receipts"]}</section></div>')


def line_chart(points: Sequence[tuple[str, float]], width: int = 640, height: int = 160) -> str:
    """Cumulative cost after each response, as an SVG polyline."""
    if not points:
        return '<p class=muted>no priced responses yet</p>'
    top = max(p[1] for p in points) or 1.0
    pad = 36
    n = max(len(points) - 1, 1)
    xy = [(pad + i * (width - 2 * pad) / n, height - 20 - v / top * (height - 40)) for i, (_, v) in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>{esc(points[i][0])} '
                   f'{esc(money(points[i][1]))}</title></circle>' for i, (x, y) in enumerate(xy))
    return (f'<svg class="chart line" viewBox="0 0 {width} {height}" role=img '
            f'aria-label="cumulative cost, {esc(money(points[-1][1]))} after {len(points)} responses">'
            f'<line x1="{pad}" y1="{height - 20}" x2="{width - pad}" y2="{height - 20}" class=axis />'
            f'<polyline points="{line}" class=series />{dots}'
            f'<text x="{pad}" y="14" class=label>{esc(money(top))}</text>'
            f'<text x="{pad}" y="{height - 4}" class=label>{esc(points[0][0])}</text>'
            f'<text x="{width - pad}" y="{height - 4}" class=label text-anchor=end>'
            f'{len(points)} responses · {esc(points[-1][0])}</text></svg>')


def bar_chart(rows: Sequence[Mapping[str, Any]], width: int = 640, bar: int = 22) -> str:
    """`ao cost --by day` as horizontal SVG bars, each labelled with its exact dollars."""
    if not rows:
        return '<p class=muted>no usage found</p>'
    top = max(float(r["cost_usd"]) for r in rows) or 1.0
    label_w, value_w = 100, 90
    span = width - label_w - value_w
    parts = []
    for i, r in enumerate(rows):
        y = i * (bar + 6)
        w = max(1.0, float(r["cost_usd"]) / top * span)
        parts.append(f'<g class=bar data-key="{esc(r["key"])}" data-cost="{esc(r["cost_usd"])}">'
                     f'<text x="0" y="{y + bar * 0.7:.0f}" class=label>{esc(r["key"])}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" />'
                     f'<text x="{label_w + w + 6:.0f}" y="{y + bar * 0.7:.0f}" class=label>{esc(money(r["cost_usd"]))}'
                     "</text></g>")
    height = len(rows) * (bar + 6)
    return (f'<svg class="chart bars" viewBox="0 0 {width} {height}" role=img aria-label="cost by day">'
            f'{"".join(parts)}</svg>')


def cost_page(by_day: Mapping[str, Any], by_model: Mapping[str, Any]) -> str:
    model_rows = "".join(
        f'<tr data-model="{esc(r["key"])}"><td>{esc(r["key"])}</td><td>{esc(r["tokens"]["input"])}</td>'
        f'<td>{esc(r["tokens"]["cached_input"])}</td><td>{esc(r["tokens"]["output"])}</td>'
        f'<td>{esc(r["tokens"]["reasoning"])}</td><td class=usd>{esc(money(r["cost_usd"]))}</td></tr>'
        for r in by_model["rows"])
    totals = by_model["totals"]
    notes = "".join(f'<p class=muted>no price known for model {esc(m)}; counted as $0</p>'
                    for m in by_model.get("unpriced_models", []))
    return (f'<h1>cost</h1><p>total <b class=total>{esc(money(totals["cost_usd"]))}</b> · '
            f'{esc(totals["tokens"]["total"])} tokens (the numbers `ao cost` prints)</p>'
            f'<h2>by day</h2>{bar_chart(by_day["rows"])}'
            '<h2>by model</h2><table class=models><thead><tr><th>model</th><th>input</th><th>cached</th>'
            f'<th>output</th><th>reasoning</th><th>cost</th></tr></thead><tbody>{model_rows}</tbody></table>{notes}')


def sse(event: str, data: str) -> bytes:
    """One Server-Sent Event; a multi-line payload becomes several `data:` lines, which the browser rejoins."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return (f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()
