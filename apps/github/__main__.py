from apps.github.server import server

server.serve()
