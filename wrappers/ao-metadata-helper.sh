# ao-wrapper: ao-metadata-helper.sh version=1 sha256=@SHA256@
# Sourced by ao's git and gh wrappers (POSIX sh). Every name here starts with ao_ or _ao_.
# Values are never evaluated: they are hex-encoded before they reach the events file.

# Set AO_REAL to the real $1 on PATH. Skips this wrapper's dir (also through a symlink or a
# trailing slash: -ef compares inodes) and every wrapper dir already passed (AO_WRAPPER_ACTIVE),
# so two wrapper dirs on PATH can never call each other in a loop.
ao_find_real() {
    _ao_self=${0%/*}
    [ "$_ao_self" = "$0" ] && _ao_self=.
    case $_ao_self in /*) ;; *) _ao_self=$PWD/$_ao_self ;; esac
    case ":${AO_WRAPPER_ACTIVE-}:" in
        *":$_ao_self:"*) _ao_skip=$AO_WRAPPER_ACTIVE ;;
        *) _ao_skip=$_ao_self${AO_WRAPPER_ACTIVE:+:$AO_WRAPPER_ACTIVE} ;;
    esac
    AO_REAL=
    set -f
    _ao_ifs=$IFS
    IFS=:
    for _ao_d in $PATH; do
        [ -n "$_ao_d" ] || _ao_d=.
        for _ao_s in $_ao_skip; do
            [ "$_ao_d" -ef "$_ao_s" ] && continue 2
        done
        if [ -f "$_ao_d/$1" ] && [ -x "$_ao_d/$1" ] && ! [ "$_ao_d/$1" -ef "$0" ]; then
            AO_REAL=$_ao_d/$1
            break
        fi
    done
    IFS=$_ao_ifs
    set +f
    if [ -z "$AO_REAL" ]; then
        printf 'ao wrapper: real %s not found on PATH\n' "$1" >&2
        exit 127
    fi
    AO_WRAPPER_ACTIVE=$_ao_skip
    export AO_WRAPPER_ACTIVE
}

# True when an event could be recorded: a plain session id and an existing data dir.
ao_can_record() {
    case ${AO_SESSION-} in ''|.|..|*[!A-Za-z0-9._-]*) return 1 ;; esac
    [ -n "${AO_DATA_DIR-}" ] && [ -d "$AO_DATA_DIR" ]
}

# The bytes of $1 as lowercase hex: quotes, newlines and $(...) come through intact and inert.
ao_hex() {
    printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

# Append one event line: $1 cmd (git|gh), $2 event kind, $3 more JSON members built by the caller
# from hex strings and digits only. Failures are silent: recording must never break the command.
ao_record() {
    ao_can_record || return 0
    _ao_sdir=$AO_DATA_DIR/sessions/$AO_SESSION
    # umask 077 for what this function creates (dirs 0700, the events file 0600), restored after:
    # the wrapped command already ran, but the caller's umask is not ours to change
    _ao_umask=$(umask)
    umask 077
    [ -d "$_ao_sdir" ] || mkdir -p "$_ao_sdir" 2>/dev/null || { umask "$_ao_umask"; return 0; }
    _ao_ts=$(date +%s 2>/dev/null)
    _ao_line="{\"ts\":${_ao_ts:-0},\"session\":\"$AO_SESSION\",\"cmd\":\"$1\",\"event\":\"$2\"$3}
"
    # One printf of one string (newline included) to an O_APPEND fd is one write(2), so concurrent
    # writers neither interleave nor lose lines; nothing is read back and rewritten. dash writes any
    # length at once, bash only up to its 4 KiB buffer: longer (absurd) lines are dropped, not torn.
    [ "${#_ao_line}" -le 4000 ] && { printf '%s' "$_ao_line" >>"$_ao_sdir/events.jsonl"; } 2>/dev/null
    umask "$_ao_umask"
    return 0
}

# Run "$@" in the foreground with stdin, stdout and stderr untouched; return its status. Only the
# shell's own stderr points at /dev/null meanwhile: dash reports a child killed by a signal
# ("Terminated") there, and the direct command would print no such line.
ao_run() {
    exec 9>&2 2>/dev/null
    (exec "$@" 2>&9 9>&-)
    _ao_status=$?
    exec 2>&9 9>&-
    return "$_ao_status"
}

# Exit as the child did; when it died of a signal, die of the same signal. 129 stays an exit
# code: git exits 129 on usage errors, which sh cannot tell from death by SIGHUP.
ao_exit() {
    if [ "$1" -gt 129 ] && [ "$1" -lt 160 ]; then
        _ao_sig=$(kill -l "$1" 2>/dev/null) && {
            trap - "$_ao_sig"
            kill -s "$_ao_sig" $$
        }
    fi
    exit "$1"
}
