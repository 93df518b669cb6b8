"""A scripted model server that speaks the OpenAI Responses API, to drive the real codex offline."""
