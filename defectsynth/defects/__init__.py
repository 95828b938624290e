"""Built-in defect generators, each a plugin registered through ``register_generators``."""
