"""Running a declared server: the ASGI app and its lifespan, under uvicorn or on a serverless platform."""
