"""Logs, and (as they arrive) tracing, metrics and alerts: what operators see (OBS-*)."""
