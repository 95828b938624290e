"""Broken on purpose: a hook name that does not exist (register_generator, singular)."""

from defectsynth import hookimpl


@hookimpl
def register_generator(register):
    pass
