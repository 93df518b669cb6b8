"""Sessions: the use cases (spawn, resume, send, kill, rm, wait, query, reconcile).

The only room that knows what a session's life looks like.
"""
