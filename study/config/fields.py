"""How a config field declares its part in a run's id; study/config/identity.py reads it.

A field is identity unless declared ``not_identity``. An identity field may still be left out of
the id: at one value (``omit_at``: a field added after run ids were in use is left out at its
default, so the ids of the runs before it stay), or while conditions on other fields all hold
(``omit_when``: e.g. a LiteVAE-only encoder field in an SD-VAE run). docs/architecture.md,
"Run identity", says when to use which.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

# The metadata keys a field's declaration sets (absent: identity, never left out).
IDENTITY = "identity"
OMIT_AT = "omit_at"
OMIT_WHEN = "omit_when"


@dataclass(frozen=True)
class Condition:
    """The config's value at the dotted ``key`` is one of ``values`` (``among``) or none of them."""

    key: str
    values: tuple[Any, ...]
    among: bool = True

    def holds(self, cfg: Any) -> bool:
        value = functools.reduce(getattr, self.key.split("."), cfg)
        return (value in self.values) == self.among


def is_in(key: str, *values: Any) -> Condition:
    """The value at ``key`` is one of ``values``."""
    return Condition(key, values)


def not_in(key: str, *values: Any) -> Condition:
    """The value at ``key`` is none of ``values``."""
    return Condition(key, values, among=False)


def _field(default: Any, metadata: dict[str, Any]) -> Any:
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def not_identity(default: Any) -> Any:
    """A field that does not change what is trained (intervals, paths, worker counts): never in the id."""
    return _field(default, {IDENTITY: False})


def identity_field(default: Any, *, omit_at: Any = dataclasses.MISSING, omit_when: tuple[Condition, ...] = ()) -> Any:
    """An identity field left out of the id when its value equals ``omit_at`` (when given), or
    when every condition of ``omit_when`` holds (when any is given)."""
    metadata: dict[str, Any] = {IDENTITY: True, OMIT_WHEN: tuple(omit_when)}
    if omit_at is not dataclasses.MISSING:
        metadata[OMIT_AT] = omit_at
    return _field(default, metadata)
