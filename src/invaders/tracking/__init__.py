"""MLflow: where runs go, the outbox that survives outages, run descriptions, the registry and promotion."""
