"""Per-principal call rate limits: in one process, or across replicas through Redis."""
