"""Notifier adapters: SQLite store, SMTP, webhooks, NATS JetStream, metrics, HTTP."""
