"""Talking to the server: the HTTP client wrapper and the sync engine. No Qt."""
