"""The focused database MCP server (`python -m apps.db`)."""
