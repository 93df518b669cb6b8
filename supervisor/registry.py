"""ao's extension points in one place: each entry is a name and the module that implements it.

Built-ins are registered the same way any new one would be. Only names live here, so config
validation and the CLI can list choices without importing a runtime; modules load when used.
"""
from __future__ import annotations

# A runtime starts, watches and stops codex (launch/runtimes/base.py: Runtime). The module defines
# RUNTIME. The first entry is the default for runs that need no terminal.
RUNTIMES: dict[str, str] = {
    "headless": "supervisor.launch.runtimes.headless",
    "tmux": "supervisor.launch.runtimes.tmux",
    "ray": "supervisor.launch.runtimes.ray",
}
# Runtimes whose rollouts are not files under the session's CODEX_HOME on this machine (a remote one
# lists itself here). Readers ask such a runtime where its rollout is; for the rest they look locally
# without importing the runtime, which `ao status` would pay for on every call.
REMOTE_ROLLOUTS: frozenset[str] = frozenset()
# A runtime's own config section, under its name: (schema node, defaults, why a repository config may
# not set it). Kept with the registry so config validation never names a runtime itself.
RUNTIME_SETTINGS: dict[str, tuple[dict[str, object], dict[str, object], str]] = {
    "ray": ({"keys": {
        "address": "str",                  # auto (RAY_ADDRESS or a running local cluster) or host:port
        "node_root": "str",                # where workspaces and codex homes live on each node
        "resources": {"values": "number"},  # Ray resources each agent asks for, e.g. {CPU: 1, big_box: 1}
    }}, {"address": "auto", "node_root": "~/.local/share/ao/ray", "resources": {"CPU": 1}},
        "sends agents, their code and their credentials to another cluster"),
}
