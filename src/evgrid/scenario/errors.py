"""The one exception a scenario that cannot be used raises (own module: loader and resources
both raise it, and neither should import the other for it)."""

from __future__ import annotations


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the field path, value and rule."""
