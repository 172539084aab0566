"""Focused MCP servers, each one job, sharing the production layer in `apps.kit`."""
