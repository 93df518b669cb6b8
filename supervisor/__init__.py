"""ao: a supervisor for fleets of OpenAI Codex CLI agents."""
__version__ = "0.1.0"
