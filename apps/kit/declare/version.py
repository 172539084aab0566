"""The platform's version, reported as `serverInfo.version` by every server (kept equal to pyproject's)."""

__version__ = "0.1.0"
