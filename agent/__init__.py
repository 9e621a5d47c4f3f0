"""Orchestration: the CLI, recorded replies and (later) live conversation sessions."""
