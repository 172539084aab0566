from apps.notify.server import server

server.serve()
