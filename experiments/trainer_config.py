"""``trainer.*``: every argument of ``lightning.Trainer``, read from its own signature.

Nothing is copied by hand: :data:`TrainerConfig` is a dataclass made from the signature of
``lightning.Trainer.__init__``, so a Lightning release that adds an argument adds a key, and
an unknown key is an error naming the closest one (``trainer.max_epochz`` -> did you mean
``trainer.max_epochs``). Types follow Lightning's annotations where they are plain
(``int``, ``float``, ``bool``, ``str`` and their unions); an argument that also takes objects
(``accelerator``, ``profiler``, ``max_time``, ...) takes any YAML value and Lightning checks it.
The signature is read from Lightning's source with :mod:`ast` rather than by importing it:
importing Lightning costs seconds, and ``list``, ``show`` and every config error would pay them
(a test checks the result against ``inspect.signature``).

Written once here:

- :data:`SUITE_DEFAULTS`: where the suite's default differs from Lightning's;
- :data:`OWNED`: arguments the suite sets itself, and the key to use instead;
- two keys of the suite's own: ``compile`` (``torch.compile`` each network: ``true`` for
  the default backend, or a backend name) and ``float32_matmul_precision`` (``None``:
  ``high`` on CUDA, PyTorch's default elsewhere).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any, Optional, Union

#: the suite's defaults where they differ from Lightning's
SUITE_DEFAULTS: dict[str, Any] = {
    "devices": 1,
    "precision": "32-true",
    "max_epochs": 10,
    "log_every_n_steps": 50,
    "num_sanity_val_steps": 2,
    "enable_progress_bar": True,
    "gradient_clip_algorithm": "norm",
    "deterministic": False,
}

#: the suite's types where Lightning's annotation is wider than the config needs: precision
#: as a string (``trainer.precision=16`` reads as "16", which Lightning takes like 16)
SUITE_TYPES: dict[str, Any] = {"precision": str}

#: Trainer arguments the suite sets from other keys: argument -> what to use instead
OWNED: dict[str, str] = {
    "logger": "the logger.* keys (CSV always, wandb by logger.wandb.mode)",
    "callbacks": "the system's callbacks (and checkpoint.* for checkpointing)",
    "default_root_dir": "output_dir (each run gets its own folder)",
    "plugins": "trainer.precision and trainer.sync_batchnorm",
    "enable_checkpointing": "checkpoint.* (checkpoint.save_top_k=0 and save_last=false: none)",
}

#: keys of the suite's own under trainer.* (not Trainer arguments)
SUITE_KEYS: dict[str, tuple[Any, Any]] = {
    "compile": (Any, False),
    "float32_matmul_precision": (Optional[str], None),
}

_PLAIN = {"int": int, "float": float, "bool": bool, "str": str}


def _trainer_source() -> Path:
    spec = importlib.util.find_spec("lightning")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lightning is not installed")
    return Path(spec.submodule_search_locations[0]) / "pytorch" / "trainer" / "trainer.py"


def _members(node: ast.expr) -> list[str]:
    """An annotation's members as names: ``Optional[Union[int, float]]`` -> int, float, None;
    anything that is not a plain type is ``"other"``."""
    if isinstance(node, ast.Constant) and node.value is None:
        return ["None"]
    if isinstance(node, ast.Name):
        return [node.id if node.id in _PLAIN else "other"]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _members(node.left) + _members(node.right)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if node.value.id == "Optional":
            return [*_members(inner[0]), "None"]
        if node.value.id == "Union":
            return [m for e in inner for m in _members(e)]
    return ["other"]


def _field_type(annotation: ast.expr | None) -> Any:
    """A type OmegaConf can check: Lightning's annotation if it is made of plain types."""
    members = _members(annotation) if annotation is not None else ["other"]
    optional = "None" in members
    plain = [_PLAIN[m] for m in dict.fromkeys(members) if m in _PLAIN]
    if "other" in members or not plain:
        return Any  # takes objects, literals or containers too: Lightning checks the value
    if bool in plain and len(plain) > 1:
        return Any  # e.g. fast_dev_run: int | bool (OmegaConf would turn 1 into True)
    kind = plain[0] if len(plain) == 1 else Union[tuple(plain)]
    return Optional[kind] if optional else kind


def lightning_signature() -> dict[str, tuple[Any, Any]]:
    """``Trainer.__init__``'s arguments: ``name -> (field type, default)``, from the source."""
    tree = ast.parse(_trainer_source().read_text())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    init = next(n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args
    found = {}
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        found[arg.arg] = (_field_type(arg.annotation), ast.literal_eval(default))
    return found


def _trainer_fields() -> list[tuple[str, Any, Any]]:
    fields = []
    for name, (kind, default) in lightning_signature().items():
        if name in OWNED:
            fields.append((name, Any, field(default=None)))
            continue
        default = SUITE_DEFAULTS.get(name, default)
        kind = SUITE_TYPES.get(name, kind)
        if default is not None and kind in _PLAIN.values() and not isinstance(default, kind):
            kind = Any
        fields.append((name, kind, field(default=default)))
    for name, (kind, default) in SUITE_KEYS.items():
        fields.append((name, kind, field(default=default)))
    return fields


TrainerConfig = make_dataclass("TrainerConfig", _trainer_fields())
TrainerConfig.__doc__ = "Every ``lightning.Trainer`` argument, plus the suite's own keys."
TrainerConfig.__module__ = __name__


def owned_key_error(name: str) -> str:
    return f"trainer.{name} is set by the suite; use {OWNED[name]}"


def lightning_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """The ``lightning.Trainer`` keyword arguments among ``trainer.*`` values: the suite's own
    keys and the arguments it owns left out, unset (None) values left to Lightning."""
    return {
        k: v
        for k, v in values.items()
        if k not in SUITE_KEYS and k not in OWNED and not (v is None and k in _NONE_DEFAULTS)
    }


_NONE_DEFAULTS = {name for name, (_, default) in lightning_signature().items() if default is None}
