from apps.files.server import server

server.serve()
