"""Team operations: the team server's auth app, its users, the retrain script's helpers."""
