from apps import collector

collector.pause()  # before the server's modules load (apps.collector)
from apps.notify.server import server  # noqa: E402

server.serve()
