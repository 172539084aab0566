"""Monitoring as code: Prometheus rules and Alertmanager routing, rendered from one parameter set."""
