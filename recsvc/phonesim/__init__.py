"""Simulated phones and load tools (``recsvc-phone``); the server never imports these."""

__all__ = ["phone", "pacer", "fleet", "simulator", "verification", "abuse", "cli"]
