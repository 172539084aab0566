"""`/mcp` over HTTP: shedding before the app, the HTTP checks and the bounded body read, the endpoint that hands
an admitted request to `apps.kit.call`, and the uvicorn configuration."""
