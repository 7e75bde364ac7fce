"""Simulated phones and load tools (``recsvc-phone``); the server never imports these."""
