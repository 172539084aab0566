"""Processes that run beside the platform's own services (not focused servers): the egress proxy's meter."""
