"""Broken on purpose: fails while importing."""

import this_module_does_not_exist  # noqa: F401
