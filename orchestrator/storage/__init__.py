"""Storage: the artifact store, cache keys and data versions."""
