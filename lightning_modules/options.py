"""Typed options for the LightningModules: every system's config dataclasses go in and out of
modules (and checkpoints) through these two functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def as_config(cls: type[T], value: T | Mapping[str, Any] | None) -> T:
    """``value`` as a ``cls`` instance: an instance as it is, a mapping over the defaults, an
    instance of a subclass (or another dataclass, e.g. a config section that adds keys) cut
    down to ``cls``'s fields."""
    if type(value) is cls:
        return value
    names = {f.name for f in dataclasses.fields(cls)}
    if isinstance(value, cls) or dataclasses.is_dataclass(value):
        value = {n: getattr(value, n) for n in names if hasattr(value, n)}
    unknown = sorted(set(value or {}) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown option(s) {', '.join(unknown)}")
    return cls(**dict(value or {}))


def plain(config: Any) -> dict[str, Any]:
    """A config dataclass as plain dicts and lists (what a weights-only checkpoint can hold)."""
    return dataclasses.asdict(config)
