"""The `register_intent_plan` MCP server ao gives codex for a session (stdio, JSON-RPC 2.0 lines).

Stdlib only, run as `python -I -S -c <this source>` (hooks.plan_mcp_overrides embeds it), so it
starts fast inside the agent's jail and editing this file mid-session changes nothing. It is the
agent's side: it only checks the plan's shape and acknowledges. The plan is taken, normalized and
enforced by the session's guard from codex's PreToolUse payload for `mcp__ao__register_intent_plan`
(codex 0.169.0 fires PreToolUse for MCP tools, with the arguments as `tool_input`), so nothing
this process says can register or approve anything.
"""
from __future__ import annotations

import sys

SERVER_NAME = "ao"
TOOL_NAME = "register_intent_plan"
PROTOCOL_VERSION = "2025-06-18"
MAX_LINE = 1 << 20
TOOL: dict = {  # plain JSON; typing is not imported here, to start fast
    "name": TOOL_NAME,
    "description": ("Register your plan before any tool call: the goal and each step you will take. "
                    "ao allows only tool calls that match a registered step; call this again to revise it."),
    "inputSchema": {
        "type": "object",
        "properties": {
            "goal": {"type": "string", "description": "what the plan achieves"},
            "steps": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "description": ("the tool: shell (a command) or apply_patch "
                                                                 "(an edit), or an MCP tool name")},
                    "description": {"type": "string"},
                    "metadata": {"type": "object", "properties": {"inputs": {
                        "type": "object",
                        "description": ("for shell: {\"command\": \"the command or a prefix ending in *\"}; "
                                        "for apply_patch: {\"paths\": [\"files or globs\"]}")}}},
                },
                "required": ["action", "description"],
            }},
        },
        "required": ["goal", "steps"],
    },
}


def shape_problem(args: object) -> str | None:
    """Why the arguments are not `{goal, steps: [{action, description, metadata}]}`, or None."""
    if not isinstance(args, dict):
        return "the arguments are not an object"
    if not isinstance(args.get("goal"), str) or not args["goal"].strip():
        return "`goal` must be a non-empty string"
    steps = args.get("steps")
    if not isinstance(steps, list) or not steps:
        return "`steps` must be a non-empty list"
    for n, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("action"), str) or not step["action"].strip():
            return f"steps[{n}] needs an `action` string"
        if "metadata" in step and not isinstance(step["metadata"], dict):
            return f"steps[{n}].metadata must be an object"
    return None


def answer(message: dict) -> dict | None:
    """The JSON-RPC response to one request (None for a notification)."""
    method, msg_id = message.get("method"), message.get("id")
    if msg_id is None:
        return None
    if method == "initialize":
        params = message.get("params") or {}
        version = params.get("protocolVersion") if isinstance(params, dict) else None
        result: dict = {"protocolVersion": version if isinstance(version, str) else PROTOCOL_VERSION,
                  "capabilities": {"tools": {"listChanged": False}},
                  "serverInfo": {"name": SERVER_NAME, "version": "1"}}
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        params = message.get("params") or {}
        if not isinstance(params, dict) or params.get("name") != TOOL_NAME:
            return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32602, "message": "unknown tool"}}
        problem = shape_problem(params.get("arguments"))
        text = (f"plan rejected: {problem}; call {TOOL_NAME} again with {{goal, steps:[{{action, description, "
                "metadata:{inputs}}]}}") if problem else "plan registered; tool calls are checked against its steps"
        result = {"content": [{"type": "text", "text": text}], "isError": problem is not None}
    else:
        return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32601, "message": f"method not found: {method}"}}
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def main() -> int:
    import json

    stdin, stdout = sys.stdin.buffer, sys.stdout
    while True:
        line = stdin.readline(MAX_LINE + 1)
        if not line:
            return 0
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            reply = answer(message) if isinstance(message, dict) else None
        except ValueError:
            reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        if reply is not None:
            stdout.write(json.dumps(reply) + "\n")
            stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
