"""The hooks a defectsynth plugin may implement.

Every hook receives a ``register`` callback: the host owns naming, collisions and
aggregation, a plugin only hands over classes. Arguments may be added to a hook in a
later release, never removed or renamed; an implementation may accept fewer arguments
than the specification lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("defectsynth")
hookimpl = pluggy.HookimplMarker("defectsynth")


@hookspec
def register_generators(register: Callable[[type[Any]], None]) -> None:
    """Register defect generators.

    Call ``register(GeneratorClass)`` once for each :class:`defectsynth.DefectGenerator`
    subclass the plugin provides. The class must have a unique ``name``; a second
    generator with a name already taken is refused and reported as a load error of the
    plugin that came later (built-ins, then entry points, then plugin folders).

    :param register: callback taking one ``DefectGenerator`` subclass.
    :return: nothing; return values are ignored. Every plugin's implementation is called.
    """


@hookspec
def register_writers(register: Callable[[type[Any]], None]) -> None:
    """Register dataset writers (output formats).

    Call ``register(WriterClass)`` once for each :class:`defectsynth.DatasetWriter`
    subclass the plugin provides. Its ``name`` is what a recipe lists under
    ``output.formats``; names are unique in the same way as generator names.

    :param register: callback taking one ``DatasetWriter`` subclass.
    :return: nothing; return values are ignored. Every plugin's implementation is called.
    """
