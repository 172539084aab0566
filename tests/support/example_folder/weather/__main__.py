from .server import server

server.serve()
