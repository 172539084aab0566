from apps.db.server import server

server.serve()
