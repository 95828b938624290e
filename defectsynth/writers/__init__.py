"""Built-in dataset writers, each a plugin registered through ``register_writers``."""
