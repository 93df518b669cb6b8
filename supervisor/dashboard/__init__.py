"""`ao dashboard`: the fleet in a browser (Starlette + uvicorn, server-rendered HTML, live over SSE)."""
