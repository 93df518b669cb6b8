"""The client side of `ao watch`: ask the resident process for an answer, or say None to compute it here.

`ao status` and `ao cost` call `ask` before doing any work. It costs a connect() when a watcher runs
and a failed connect() (~20 us) when none does, and it imports only what `python -S` already has
plus `_socket` and `_json` (supervisor.plain_json, not `json`): the answer it brings back
saves the imports and the work, so it must not spend them itself.

Every doubt means None, and the caller computes the answer itself (the one-shot path): no socket,
a socket nobody listens on (a watcher killed -9), a watcher of other code, another environment, a
config the watcher cannot read the same way, a watcher that is catching up or cannot trust inotify
for a file the answer reads. The watcher only ever answers with the bytes the one-shot path prints.
The one doubt that cannot send the client back comes after it handed the watcher its stdout (see
`request`): a watcher that ends while writing the answer there makes the command fail with one line.
"""
from __future__ import annotations

import os
import sys

from supervisor import plain_json

# typing costs 3 ms to import, a tenth of a watched answer: annotations only
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROTO = 2  # 2: the client hands over its stdout and stderr only once the answer is ready
SOCKET_NAME = "watch.sock"
LOCK_NAME = "watch.lock"
STATE_NAME = "watch.json"
CONFIG_NAME = "agent-orchestrator.yaml"  # supervisor.config.CONFIG_NAME (tests/test_watch.py checks)
# the environment an answer depends on; the watcher answers only a client whose values equal its own
ENV_KEYS = ("AO_HOME", "CODEX_HOME", "HOME", "TZ")
ACCEPT_TIMEOUT_S = 0.5  # connect and the watcher's first byte: a live watcher answers this at once
ANSWER_TIMEOUT_S = 120.0  # then it may compute (after a change); a dead one closes the socket sooner
OFFER = b'{"offer": true}\n'  # the watcher's answer is ready, to be written into the client's own files
WRITING = b"w"  # the watcher has the client's files and begins to write
DISABLE_ENV = "AO_NO_WATCH"  # set to 1: never ask the watcher (tests compare both paths)


def watch_dir() -> str:
    """`$AO_HOME/watch`: private (0700) like the rest of $AO_HOME, which the agent's jail hides."""
    home = os.environ.get("AO_HOME") or os.path.join(os.path.expanduser("~"), ".agent-orchestrator")
    return os.path.join(os.path.expanduser(home), "watch")


def package_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def located_config(explicit: str | None) -> tuple[str | None, bool] | None:
    """Which config file `supervisor.config.locate` would pick, as (absolute path or None, the user's own),
    without importing the config module; None when only this process can read it the same way (a
    repository's config in the working directory, which needs the trust check where it is)."""
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit)), True
    env = os.environ.get("AO_CONFIG")
    if env:
        return os.path.abspath(os.path.expanduser(env)), True
    home = os.environ.get("AO_HOME") or os.path.join(os.path.expanduser("~"), ".agent-orchestrator")
    user = os.path.join(os.path.expanduser(home), CONFIG_NAME)
    if os.path.isfile(CONFIG_NAME):
        try:
            if os.path.isfile(user) and os.path.samefile(CONFIG_NAME, user):
                return user, True
        except OSError:
            return None
        return None
    return (user, True) if os.path.isfile(user) else (None, True)


def _connect() -> Any:
    """A socket connected to the watcher, or None. The path goes through /proc/self/fd: sun_path holds
    107 bytes and $AO_HOME may be deeper than that."""
    import _socket

    try:
        dirfd = os.open(watch_dir(), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(ACCEPT_TIMEOUT_S)
        sock.connect(f"/proc/self/fd/{dirfd}/{SOCKET_NAME}")
        return sock
    except ConnectionRefusedError:
        sock.close()
        clear_stale(dirfd)
        return None
    except OSError:
        sock.close()
        return None
    finally:
        os.close(dirfd)


def clear_stale(dirfd: int) -> None:
    """A socket nobody listens on is a watcher's that was killed -9: remove it if no watcher holds the
    lock (a starting one binds a fresh socket after taking the lock, so this cannot remove a live one)."""
    import fcntl

    try:
        fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    try:
        os.unlink(SOCKET_NAME, dir_fd=dirfd)
    except OSError:
        pass
    os.close(fd)  # releases the lock


def request(message: dict[str, Any], accept_timeout: float = ACCEPT_TIMEOUT_S, answer_timeout: float = ANSWER_TIMEOUT_S,
            fds: list[int] | None = None) -> tuple[dict[str, Any], memoryview | bytes] | None:
    """Send one request; (header, body) of the watcher's reply, or None when there is no usable reply.

    With `fds` (stdout and stderr) the watcher may offer to write a long answer into them itself. They
    go to it only once its answer is ready, as the client's commitment to take it: from then on the
    answer may be in the client's stdout, so no failure sends the client to the one-shot path, which
    would print it a second time. (Sent with the request, a client that timed out and computed the
    answer itself could have the watcher's copy written into its stdout too.)"""
    sock = _connect()
    if sock is None:
        return None
    try:
        sock.settimeout(accept_timeout)
        sock.sendall(plain_json.dumps(message).encode() + b"\n")
        if sock.recv(1) != b"+":
            return None  # "-": the watcher declines (its reason follows, for `ao watch --status`)
        sock.settimeout(answer_timeout)
        raw = sock.recv(1 << 16)
        while raw and b"\n" not in raw:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return None
            raw += chunk
        if raw == OFFER and fds:
            return _commit(sock, fds, answer_timeout)
        chunks = [raw]
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        sock.close()
    return plain_json.framed(b"".join(chunks))  # None when cut short: the watcher died mid-answer


def _commit(sock: Any, fds: list[int], timeout: float) -> tuple[dict[str, Any], memoryview | bytes] | None:
    """Hand the watcher our stdout and stderr and wait for its word that it wrote the answer into them."""
    import _socket

    rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    try:
        sock.sendmsg([b"c"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    except OSError:
        return None  # the watcher is gone, and it never had our files
    raw, timed_out = b"", False
    try:
        sock.settimeout(timeout)
        while chunk := sock.recv(1 << 16):
            raw += chunk
    except TimeoutError:
        timed_out = True
    except OSError:
        pass
    if raw.startswith(WRITING):
        reply = plain_json.framed(raw[len(WRITING):])
        if reply is not None:
            return reply
        why = "ao watch ended before it had written all of it"  # killed -9 mid-answer, say
    elif not timed_out:
        return None  # it closed the socket before it began to write: nothing of the answer is in our files
    else:
        why = "ao watch did not answer in time"  # it has our files and may still write into them
    return {"direct": True, "code": 1, "error": why}, b""


def ask(kind: str, args: dict[str, Any], explicit_config: str | None = None) -> int | None:
    """Print the watcher's answer to `ao KIND ARGS` and return its exit code, or None to compute it here."""
    if os.environ.get(DISABLE_ENV) == "1":
        return None
    config = located_config(explicit_config)
    if config is None:
        return None
    from supervisor import __version__

    message = {"proto": PROTO, "version": __version__, "package": package_dir(), "kind": kind, "args": args,
               "env": {k: os.environ.get(k) for k in ENV_KEYS}, "config": list(config)}
    fds = _direct_fds()
    message["direct"] = fds is not None
    reply = request(message, fds=fds)
    if reply is None:
        return None
    header, body = reply
    if header.get("direct") is True:
        error = header.get("error")
        if error:  # a full disk, say: the one-shot path would have failed writing too
            sys.stderr.write(f"ao: error: cannot write the answer: {error}\n")
        code = header.get("code")
        return code if isinstance(code, int) and not error else 1  # the answer is in our stdout and stderr
    out_len = header.get("out_len")
    code = header.get("code")
    if not isinstance(out_len, int) or not isinstance(code, int) or not 0 <= out_len <= len(body):
        return None
    for stream, data in ((sys.stdout, body[:out_len]), (sys.stderr, body[out_len:])):
        if not data:
            continue
        if (stream.encoding or "").lower().replace("-", "") == "utf8":  # the watcher sent strict UTF-8
            stream.flush()
            stream.buffer.write(data)  # the bytes the one-shot path's text would encode to, without the copy
            stream.buffer.flush()
        else:  # written as text, like the one-shot path, so another encoding treats both the same
            stream.write(str(data, "utf-8"))
            stream.flush()
    return code


def _direct_fds() -> list[int] | None:
    """stdout's and stderr's fds when the watcher may write the answer into them itself: UTF-8 text
    streams (the bytes the one-shot path's text encodes to) on a file or a character device. Not a
    pipe: a reader that goes away mid-answer is the one-shot path's to report."""
    import stat as stat_mod

    fds = []
    for stream in (sys.stdout, sys.stderr):
        try:
            # any error handler: the watcher only answers text that encodes strictly, which every handler
            # (stderr's is backslashreplace) encodes to the same bytes
            if (stream.encoding or "").lower().replace("-", "") != "utf8":
                return None
            stream.flush()
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError):
            return None
        if not (stat_mod.S_ISREG(mode) or stat_mod.S_ISCHR(mode)):
            return None
        fds.append(fd)
    return fds
