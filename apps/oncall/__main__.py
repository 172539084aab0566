from apps.oncall.server import server

server.serve()
