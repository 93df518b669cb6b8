"""Sessions: the use cases (spawn, resume, send, kill, rm, wait, query, reconcile); the only room that knows a session's life."""
