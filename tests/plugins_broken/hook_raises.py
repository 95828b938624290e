"""Broken on purpose: raises inside its hook."""

from defectsynth import hookimpl


@hookimpl
def register_generators(register):
    raise RuntimeError("boom inside register_generators")
