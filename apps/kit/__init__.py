"""The production layer every focused MCP server gets by composition."""

from apps.kit.config import KitSettings, load_settings
from apps.kit.server import FocusedServer
from apps.kit.tools import ToolArgs

__all__ = ["FocusedServer", "KitSettings", "ToolArgs", "load_settings"]
