"""Prometheus exposition: the collector that renders the report board, and the /metrics server."""
