"""Notifier use cases: format and render alerts, route them, send them exactly once."""
