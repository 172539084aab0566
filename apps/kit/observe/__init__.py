"""What a server leaves behind to be watched: JSON log lines, Prometheus metrics (scraped or pushed), traces,
volume space and readiness."""
