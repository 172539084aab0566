"""Grafana dashboards as code; `python -m dashboards.build` writes the checked-in JSON."""
