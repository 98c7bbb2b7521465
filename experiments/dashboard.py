"""``python -m experiments dashboard EXPERIMENT [logger.wandb.entity=E logger.wandb.project=P]
[dry_run=true]``: save the system's wandb workspace, the panels a person watches.

Each system declares its dashboard as plain data (:class:`Section`/:class:`Panel`, in its
``SystemSpec.dashboard``), so the keys a panel shows can be checked against the keys a tiny run
logs (a test does); this module turns it into a ``wandb-workspaces`` workspace and saves it.
``dry_run=true`` prints the workspace as JSON and needs no network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from experiments.config import ConfigError, parse_override

PANEL_KINDS = ("line", "media", "scalar")


@dataclass(frozen=True)
class Panel:
    """One panel: ``line`` plots ``keys`` against the step, ``media`` browses logged images or
    videos, ``scalar`` shows the latest (summary) value."""

    kind: str
    keys: tuple[str, ...]
    title: str | None = None
    log_y: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PANEL_KINDS:
            raise ValueError(f"panel kind {self.kind!r} is not one of {PANEL_KINDS}")


@dataclass(frozen=True)
class Section:
    name: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def line(*keys: str, title: str | None = None, log_y: bool = False) -> Panel:
    return Panel("line", keys, title or ", ".join(keys), log_y)


def media(*keys: str, title: str | None = None) -> Panel:
    return Panel("media", keys, title or ", ".join(keys))


def scalar(key: str, title: str | None = None) -> Panel:
    return Panel("scalar", (key,), title or key)


def panel_keys(sections: Sequence[Section]) -> set[str]:
    """Every key some panel shows."""
    return {k for s in sections for p in s.panels for k in p.keys}


def _panel(panel: Panel) -> Any:
    import wandb_workspaces.reports.v2 as wr

    if panel.kind == "line":
        return wr.LinePlot(title=panel.title, y=list(panel.keys), log_y=panel.log_y or None)
    if panel.kind == "media":
        return wr.MediaBrowser(title=panel.title, media_keys=list(panel.keys), num_columns=1)
    return wr.ScalarChart(title=panel.title, metric=panel.keys[0])


def build_workspace(name: str, entity: str, project: str, sections: Sequence[Section]) -> Any:
    """The ``wandb_workspaces`` workspace (not saved)."""
    import wandb_workspaces.workspaces as ws

    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=[
            ws.Section(name=s.name, panels=[_panel(p) for p in s.panels], is_open=True)
            for s in sections
        ],
    )


def dashboard(experiment: str, words: Sequence[str]) -> int:
    """Build (and unless ``dry_run=true``, save) the experiment's system workspace."""
    from experiments.run import compose_experiment

    dry_run = False
    overrides = []
    for word in words:
        if word.partition("=")[0] == "dry_run":
            value = parse_override(word)[1]
            if not isinstance(value, bool):
                raise ConfigError(f"dry_run: expected true or false, got {value!r}")
            dry_run = value
        else:
            overrides.append(word)
    spec, cfg = compose_experiment(experiment, overrides)
    if spec.dashboard is None:
        raise ConfigError(f"system '{cfg.system}' defines no dashboard")
    sections = spec.dashboard(cfg)
    wcfg = cfg.logger.wandb
    entity = wcfg.entity
    if entity is None and not dry_run:
        entity = _default_entity()
    name = f"{cfg.system}: {experiment}"
    try:
        workspace = build_workspace(name, entity or "<entity>", wcfg.project, sections)
    except ImportError:
        raise ConfigError(
            "dashboard needs wandb-workspaces: pip install wandb-workspaces (make setup does)"
        ) from None
    if dry_run:
        print(
            json.dumps(
                {
                    "name": name,
                    "entity": entity,
                    "project": wcfg.project,
                    "sections": [asdict(s) for s in sections],
                    "workspace": _view_spec(workspace),
                },
                indent=1,
                default=str,
            )
        )
        return 0
    workspace.save()
    print(f"dashboard: {workspace.url}")
    return 0


def _default_entity() -> str:
    import wandb

    try:
        entity = wandb.Api().default_entity
    except Exception as exc:  # not logged in, no network
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"dashboard: cannot reach wandb ({first}); `wandb login`, or give "
            "logger.wandb.entity=..., or dry_run=true to print the definition"
        ) from None
    if not entity:
        raise ConfigError("dashboard: no default wandb entity; give logger.wandb.entity=...")
    return entity


def _view_spec(workspace: Any) -> Any:
    """What ``workspace.save()`` would send (wandb-workspaces' view model), as JSON data."""
    model = workspace._to_model
    model = model() if callable(model) else model
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
