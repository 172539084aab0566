"""A second focused server for the fleet tests: a volume, Redis, no database. Its folder is all there is."""
