from apps import collector

collector.pause()  # before the server's modules load (apps.collector)
from apps.db.server import server  # noqa: E402

server.serve()
