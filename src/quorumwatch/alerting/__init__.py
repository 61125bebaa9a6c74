"""Alerting: the alert model, the pure rules, the per-chain evaluator, and the sinks that
deliver events (MQTT through the store's outbox, and Alertmanager)."""
