"""Which paths a shell command or an apply_patch writes or removes: a small shell tokenizer.

Best effort by design: it sees redirections, the usual file commands (rm, mv, cp, tee, ...),
`bash -c`, `cd`, heredocs and apply_patch headers. Whatever it cannot resolve (variables, globs)
shrinks to the folder before it, which errs towards denying. Stdlib only: it runs inside the guard.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@lru_cache(maxsize=1024)
def rule_regex(pattern: str) -> re.Pattern[str]:
    """A policy pattern, compiled once for the guard server's life."""
    return re.compile(pattern)


_REDIRECTS = (">", ">>", ">|", "&>", "&>>")
_WRAPPERS = {"sudo", "env", "nohup", "time", "command", "exec", "nice", "xargs", "timeout", "stdbuf", "doas"}
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh"}
_ALL_ARGS = {"rm", "rmdir", "unlink", "shred", "truncate", "touch", "mkdir", "tee", "mv"}
_LAST_ARG = {"cp", "install", "ln", "rsync", "scp"}
_SUBTREE = {"rm", "rmdir", "mv", "shred", "rsync"}


def split_commands(text: str) -> tuple[list[tuple[list[str], list[str]]], list[str]]:
    """Split shell text into simple commands (words, output-redirect targets) plus heredoc bodies."""
    commands: list[tuple[list[str], list[str]]] = []
    heredocs: list[str] = []
    words: list[str] = []
    redirects: list[str] = []
    pending_delims: list[str] = []
    word: list[str] | None = None
    want_target = False
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal word, want_target
        if word is not None:
            value = "".join(word)
            if want_target:
                redirects.append(value)
                want_target = False
            elif pending_delims and pending_delims[-1] == "":
                pending_delims[-1] = value.strip("'\"")
            else:
                words.append(value)
            word = None

    def end_command() -> None:
        nonlocal words, redirects
        end_word()
        if words or redirects:
            commands.append((words, redirects))
        words, redirects = [], []

    while i < n:
        c = text[i]
        if c == "\n":
            end_command()
            i += 1
            for delim in pending_delims:  # heredoc bodies start on the next line
                end = i
                body_start = i
                while end < n:
                    nl = text.find("\n", end)
                    line = text[end:] if nl == -1 else text[end:nl]
                    if line.strip() == delim:
                        heredocs.append(text[body_start:end])
                        end = n if nl == -1 else nl + 1
                        break
                    end = n if nl == -1 else nl + 1
                else:
                    heredocs.append(text[body_start:])
                i = end
            pending_delims = []
            continue
        if c in " \t":
            end_word()
        elif c == "\\" and i + 1 < n:
            if text[i + 1] != "\n":
                word = (word or []) + [text[i + 1]]
            i += 1
        elif c == "'":
            close = text.find("'", i + 1)
            close = n if close == -1 else close
            word = (word or []) + [text[i + 1:close]]
            i = close
        elif c == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\$`':
                    j += 1
                buf.append(text[j])
                j += 1
            word = (word or []) + buf
            i = j
        elif c == "#" and word is None:
            nl = text.find("\n", i)
            i = n if nl == -1 else nl
            continue
        elif c in ";|&()":
            if c == "&" and text.startswith("&>", i):
                end_word()
                want_target = True
                i += 3 if text.startswith("&>>", i) else 2
                continue
            end_command()
            i += 2 if text[i:i + 2] in ("&&", "||", ";;") else 1
            continue
        elif c == ">" or c == "<":
            digits = word is not None and "".join(word).isdigit()
            if digits:
                word = None  # the fd number of 2> is not a word
            end_word()
            if c == "<":
                if text.startswith("<<<", i):
                    i += 3
                elif text.startswith("<<", i):
                    i += 3 if text.startswith("<<-", i) else 2
                    pending_delims.append("")
                else:
                    i += 1
                continue
            j = i + 1
            if j < n and text[j] in ">|":
                j += 1
            if j < n and text[j] == "&":  # >&2: duplicate a descriptor, not a file
                j += 1
                while j < n and (text[j].isdigit() or text[j] == "-"):
                    j += 1
                i = j
                continue
            want_target = True
            i = j
            continue
        else:
            word = (word or []) + [c]
        i += 1
    end_command()
    return commands, heredocs


def _operands(args: list[str]) -> list[str]:
    out, options_done = [], False
    for arg in args:
        if options_done or not arg.startswith("-") or arg == "-":
            out.append(arg)
        elif arg == "--":
            options_done = True
    return out


def _strip_prefixes(words: list[str]) -> list[str]:
    while words:
        head = os.path.basename(words[0])
        if "=" in words[0] and not words[0].startswith(("=", "-")):
            words = words[1:]
        elif head in _WRAPPERS:
            words = words[1:]
            while words and (words[0].startswith("-") or "=" in words[0] or
                             (head == "timeout" and words[0][:1].isdigit())):
                words = words[1:]
        else:
            break
    return words


def command_targets(text: str, cwd: str, depth: int = 0) -> list[tuple[str, bool]]:
    """Paths a shell command writes or removes: (absolute path, affects the whole subtree)."""
    found: list[tuple[str, bool]] = []
    commands, heredocs = split_commands(text)
    for body in heredocs:
        found += [(resolve_path(p, cwd), False) for p in patch_files(body)]
    for words, redirects in commands:
        found += [(resolve_path(t, cwd), False) for t in redirects]
        words = _strip_prefixes(words)
        if not words:
            continue
        name, args = os.path.basename(words[0]), words[1:]
        if name == "cd":
            cwd = resolve_path(args[0] if args else os.environ.get("HOME", "/"), cwd)
            continue
        if name in _SHELLS and "-c" in args and depth < 3:
            at = args.index("-c")
            if at + 1 < len(args):
                found += command_targets(args[at + 1], cwd, depth + 1)
            continue
        ops = _operands(args)
        targets: list[str] = []
        if name in _ALL_ARGS:
            targets = ops
            if name == "mv" and len(ops) > 1:
                targets += [os.path.join(ops[-1], os.path.basename(src.rstrip("/"))) for src in ops[:-1]]
        elif name in _LAST_ARG:
            targets = ops[-1:]
            if "-t" in args and args.index("-t") + 1 < len(args):
                targets.append(args[args.index("-t") + 1])
            # the destination may be a folder: the copies land inside it under their own names
            targets += [os.path.join(t, os.path.basename(src.rstrip("/"))) for t in targets for src in ops[:-1]]
        elif name in ("chmod", "chown", "chgrp"):
            targets = ops[1:]
        elif name == "dd":
            targets = [a[3:] for a in args if a.startswith("of=")]
        elif name == "sed" and any(a.startswith(("-i", "--in-place")) for a in args):
            targets = ops[1:] if "-e" not in args and "-f" not in args else ops
        elif name == "find" and ("-delete" in args or "-exec" in args or "-execdir" in args):
            start = [a for a in args[:next((k for k, a in enumerate(args) if a.startswith(("-", "(", "!"))),
                                            len(args))]]
            targets = start or ["."]
            name = "rm"
        elif name == "git" and ops:
            sub = ops[0]
            if sub in ("rm", "mv"):
                targets, name = ops[1:], "rm"
            elif sub == "clean":
                targets, name = ["."], "rm"
            elif sub in ("checkout", "restore") and "--" in args:
                targets = args[args.index("--") + 1:]
        subtree = name in _SUBTREE or (name in ("chmod", "chown", "chgrp") and ("-R" in args or "-r" in args))
        found += [(resolve_path(t, cwd), subtree) for t in targets]
    return found


def patch_files(text: str) -> list[str]:
    """Files named in apply_patch headers: Add/Update/Delete File and Move to."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        for head in ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: "):
            if line.startswith(head):
                out.append(line[len(head):].strip())
    return out


def resolve_path(target: str, cwd: str) -> str:
    """Absolute, normalised path; anything not literal (variables, globs) shrinks to the folder before it."""
    if target.startswith("~"):
        target = os.environ.get("HOME", "/") + target[1:]
    cut = min([target.find(c) for c in "$`*?[{" if c in target] or [-1]) if any(c in target for c in "$`*?[{") else -1
    if cut != -1:
        head = target[:cut]
        target = head if head.endswith("/") or not head else (head.rsplit("/", 1)[0] + "/" if "/" in head else ".")
    return os.path.normpath(os.path.join(cwd, target or "."))


def path_rule_hit(policy: dict[str, Any], targets: list[tuple[str, bool]]) -> dict[str, Any] | None:

    workspace = policy["workspace"]
    for path, subtree in targets:
        rel = os.path.relpath(path, workspace)
        inside = rel != ".." and not rel.startswith("../")
        for rule in policy["forbidden_paths"]:
            subject = path if rule["absolute"] else (rel if inside else None)
            if subject is None:
                continue
            candidates = [subject]
            while "/" in candidates[-1].strip("/"):
                candidates.append(candidates[-1].rsplit("/", 1)[0] or "/")
            regex = rule_regex(rule["regex"])
            if any(regex.fullmatch(c) for c in candidates):
                return rule
            prefix = rule["prefix"]
            if subtree and (subject in (".", "/") or prefix == subject or prefix.startswith(subject.rstrip("/") + "/")):
                return rule
    return None
