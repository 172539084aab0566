"""How a server declares itself: its settings, its tools, what it needs from the platform, what it shows on
dashboards and alerts, and the manifest that pins its tools. Nothing here runs a request."""
