"""The hook command codex runs: hand the payload to the session's guard server and relay its answer.

Stdlib only, run as `python -I -S -c <this source>` (hooks.client_command embeds it, so editing this
file during a session changes nothing). It imports no `json`, `re`, `socket` or `enum`: `_socket`
is the C module under `socket` and is all a unix-socket round trip needs.

Wire format (guard_server.py): the request is one line `AOG1 <event> <deadline_ms>` and then the
payload bytes as codex gave them, ended by shutting down the write side. The answer is `allow`,
`deny`, `ok` or `error`, a newline, and a reason.
PreToolUse: allow = exit 0; anything else (deny, no server, a refused or slow connection, a wrong
peer, a garbled answer) = exit 2 with the reason on stderr, because codex 0.169.0 runs the call on
any other exit status or on its own timeout. Other events: exit 0, with any problem on stderr.
"""
import sys

MAX_PAYLOAD = 1 << 20
SOCKET_NAME = "guard.sock"


def _args(argv):
    out = {}
    for i in range(0, len(argv) - 1, 2):
        if argv[i].startswith("--"):
            out[argv[i][2:]] = argv[i + 1]
    return out


def _ask(args, event, payload, deadline_s):
    import _socket
    import os
    from time import monotonic

    end = monotonic() + deadline_s
    os.chdir(args["socket-dir"])  # the socket path can exceed the 107 bytes sun_path allows
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(max(end - monotonic(), 0.001))
        sock.connect(SOCKET_NAME)
        want = args.get("server-pid")
        if want:  # a server the agent bound in place of the real one has another pid
            cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
            pid = int.from_bytes(cred[:4], sys.byteorder)
            if pid != int(want):
                raise OSError(f"the socket {args['socket-dir']}/{SOCKET_NAME} is served by pid {pid}, "
                              f"not the session's runner (pid {want})")
        sock.sendall(b"AOG1 " + event.encode() + b" " + str(int(deadline_s * 1000)).encode() + b"\n" + payload)
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while True:
            left = end - monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {deadline_s:g}s")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    verdict, _, reason = b"".join(chunks).decode("utf-8", "replace").partition("\n")
    return verdict, reason


def main(argv=None):
    args = _args(sys.argv[1:] if argv is None else argv)
    event = args.get("event", "")
    pre = event == "PreToolUse"
    try:
        if not event or not event.isalpha() or "socket-dir" not in args:
            raise ValueError(f"bad hook arguments {sys.argv[1:]!r}")
        deadline_s = float(args.get("deadline") or 30)
        payload = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"the hook payload is larger than {MAX_PAYLOAD} bytes")
        verdict, reason = _ask(args, event, payload, deadline_s)
    except BaseException as exc:
        verdict, reason = "error", (f"ao guard unreachable{', failing closed' if pre else ''}: "
                             f"{type(exc).__name__}: {exc}")
    if verdict == "allow":
        return 0
    if not pre and verdict == "ok":
        if reason:  # the guard's hook output (UserPromptSubmit: additionalContext for the turn)
            sys.stdout.write(reason)
        return 0
    if pre and verdict not in ("deny", "error"):
        reason = f"ao guard sent an answer it does not understand ({verdict[:40]!r}); failing closed"
    sys.stderr.write((reason or "denied by the ao guard") + "\n")
    return 2 if pre else 0


if __name__ == "__main__":
    sys.exit(main())
