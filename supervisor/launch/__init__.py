"""Launch: resolve codex, install wrappers, build the command line, start runtimes."""
