"""Config errors: the user-facing :class:`ConfigError`, the schema's dotted keys, the closest
key to a misspelt one, and OmegaConf's exceptions rewritten as one line naming the full key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = [
    "ConfigError",
    "is_user_error",
    "valid_keys",
    "suggest_key",
    "type_name",
    "check_keys",
    "rewrite_error",
    "fmt_value",
]


class ConfigError(Exception):
    """A user-facing configuration error; its message is one line, printed without traceback."""


def is_user_error(exc: BaseException) -> bool:
    """A mistake of the user rather than a bug: ConfigError, FileNotFoundError, or a
    ``DataError`` from ``datamodules.errors`` (matched by name, so nothing is imported)."""
    if isinstance(exc, (ConfigError, FileNotFoundError)):
        return True
    return any(
        cls.__name__ == "DataError" and cls.__module__.startswith("datamodules")
        for cls in type(exc).__mro__
    )


# --------------------------------------------------------------------------------------------
# Schema introspection
# --------------------------------------------------------------------------------------------


def _is_structured_section(node: Any) -> bool:
    """True for a config node backed by a dataclass (its keys are fixed)."""
    if not isinstance(node, DictConfig):
        return False
    cls = node._metadata.object_type
    if cls is None or cls is dict:
        cls = node._metadata.ref_type
    return dataclasses.is_dataclass(cls)


def _section_cls(node: DictConfig) -> type:
    cls = node._metadata.object_type
    if cls is None or cls is dict or not dataclasses.is_dataclass(cls):
        cls = _unwrap_optional(node._metadata.ref_type)
    return cls


def _section_keys(node: DictConfig) -> list[str]:
    """Keys of a structured section (also when its value is currently None)."""
    if node._is_none() or node._is_missing():
        return [f.name for f in dataclasses.fields(_section_cls(node))]
    return [str(k) for k in node.keys()]


def _section_child(node: DictConfig, key: str) -> Any:
    """Child node of a structured section, instantiating a None-valued section's schema."""
    if node._is_none() or node._is_missing():
        node = OmegaConf.structured(_section_cls(node))
    return node._get_node(key)


def valid_keys(schema: type | DictConfig, leaves_only: bool = False) -> list[str]:
    """All dotted keys of a schema (sections and leaves); free-form dicts are leaves."""
    root = schema if isinstance(schema, DictConfig) else OmegaConf.structured(schema)
    out: list[str] = []

    def walk(node: DictConfig, prefix: str) -> None:
        for key in _section_keys(node):
            child = _section_child(node, key)
            dotted = f"{prefix}{key}"
            if _is_structured_section(child):
                if not leaves_only:
                    out.append(dotted)
                walk(child, dotted + ".")
            else:
                out.append(dotted)

    walk(root, "")
    return out


def _unwrap_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Union and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007
    return hint


def type_name(hint: Any) -> str:
    """Human-readable name of a type hint: ``int``, ``float or null``, ``list of str``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        names = [type_name(a) for a in args if a is not type(None)]
        if type(None) in args:
            names.append("null")
        return " or ".join(names)
    if hint is Any or hint is None:
        return "any value"
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin in (dict, Mapping) or hint is dict:
        return "mapping"
    if dataclasses.is_dataclass(hint):
        return f"section ({hint.__name__})"
    return getattr(hint, "__name__", str(hint))


def _node_at(root: DictConfig, dotted: str) -> Any:
    node: Any = root
    for part in re.sub(r"\[\d+\]", "", dotted).split("."):
        if not isinstance(node, DictConfig) or part not in _section_keys(node):
            return None
        node = _section_child(node, part) if _is_structured_section(node) else node._get_node(part)
    return node


def _expected_type(root: DictConfig, dotted: str) -> str:
    node = _node_at(root, dotted)
    if node is None:
        return "a valid value"
    return type_name(node._metadata.type_hint)


# --------------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------------


def suggest_key(bad: str, keys: Sequence[str]) -> str | None:
    """Closest valid dotted key to ``bad``: sibling first, then full key, then last component."""
    parent, _, last = bad.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent]
    match = difflib.get_close_matches(last, siblings, n=1, cutoff=0.6)
    if match:
        return f"{parent}.{match[0]}" if parent else match[0]
    others = [k for k in keys if k.rpartition(".")[0] != parent and not bad.startswith(k + ".")]
    match = difflib.get_close_matches(bad, others, n=1, cutoff=0.75)
    if match:
        return match[0]
    by_last: dict[str, str] = {}
    for k in keys:
        by_last.setdefault(k.rpartition(".")[2], k)
    match = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.75)
    return by_last[match[0]] if match else None


def _unknown_key_error(root: DictConfig, bad: str, origin: str) -> ConfigError:
    keys = valid_keys(root)
    hint = suggest_key(bad, keys)
    parent = bad.rpartition(".")[0]
    if hint:
        tail = f"; did you mean '{hint}'?"
    else:
        section = _node_at(root, parent) if parent else root
        while parent and not _is_structured_section(section):
            parent = parent.rpartition(".")[0]
            section = _node_at(root, parent) if parent else root
        names = _section_keys(section)
        where = f"'{parent}'" if parent else "the top level"
        tail = f"; valid keys in {where}: {', '.join(names)}"
    return ConfigError(f"unknown config key '{bad}'{tail}{origin}")


def fmt_value(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if value is None:
        return "null"
    return repr(value)


def rewrite_error(err: OmegaConfBaseException, root: DictConfig, origin: str) -> ConfigError:
    """Turn an OmegaConf exception into a one-line ConfigError naming the full key."""
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    if not key:
        return ConfigError(f"invalid config: {msg}{origin}")
    key = str(key)
    if (
        "not in" in msg
        or "Missing key" in msg
        or type(err).__name__
        in (
            "ConfigKeyError",
            "ConfigAttributeError",
        )
    ):
        return _unknown_key_error(root, key, origin)
    value = None if "is not Optional" in msg else getattr(err, "value", None)
    return ConfigError(
        f"{key}: expected {_expected_type(root, key)}, got {fmt_value(value)}{origin}"
    )


def check_keys(node: DictConfig, incoming: Mapping, prefix: str, root: DictConfig, origin: str):
    """Reject unknown keys and scalars assigned to sections before OmegaConf sees them."""
    for key, value in incoming.items():
        dotted = f"{prefix}{key}"
        if not _is_structured_section(node):
            return  # free-form mapping: anything goes
        if str(key) not in _section_keys(node):
            while isinstance(value, Mapping) and len(value) == 1:  # report a.b.c, not a
                ((sub, value),) = value.items()
                dotted = f"{dotted}.{sub}"
            raise _unknown_key_error(root, dotted, origin)
        child = _section_child(node, str(key))
        if _is_structured_section(child):
            if isinstance(value, Mapping):
                check_keys(child, value, dotted + ".", root, origin)
            elif value is None and child._metadata.optional:
                continue
            else:
                keys = ", ".join(_section_keys(child))
                raise ConfigError(
                    f"{dotted}: is a config section ({keys}); set its keys, e.g. "
                    f"{dotted}.{_section_keys(child)[0]}=..., not {fmt_value(value)}{origin}"
                )
