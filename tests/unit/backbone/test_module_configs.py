"""The TextNAS modules take typed configs whose dataclasses hold every default once."""

from __future__ import annotations

import dataclasses

import pytest

from experiments.systems.textnas.retrain import TextNASModelConfig
from lightning_modules.options import as_config, plain
from lightning_modules.textnas.config import (
    ControllerConfig,
    RetrainOptimConfig,
    SupernetConfig,
)
from lightning_modules.textnas.retrain import TextNASRetrainModule
from lightning_modules.textnas.search import TextNASSearchModule
from search_spaces.text import Architecture, TextNASOptions


def test_as_config_takes_instances_partial_mappings_and_subclasses():
    c = ControllerConfig(lr=1.0)
    assert as_config(ControllerConfig, c) is c
    assert as_config(ControllerConfig, {"lr": 3.0}) == ControllerConfig(lr=3.0)
    assert as_config(ControllerConfig, None) == ControllerConfig()
    with pytest.raises(ValueError, match="unknown option.*lrr"):
        as_config(ControllerConfig, {"lrr": 3.0})
    model = TextNASModelConfig(width=16, architecture="x.yaml")  # a config section with more keys
    assert as_config(TextNASOptions, model) == TextNASOptions(width=16)
    space = SupernetConfig(width=8, num_layers=3, k=2)
    assert space.options() == TextNASOptions(
        **{f.name: getattr(space, f.name) for f in dataclasses.fields(TextNASOptions)}
    )


def test_modules_store_plain_complete_hyper_parameters():
    """hparams are the full configs as plain dicts (weights-only checkpoints), and a module
    rebuilt from them has the same configs."""
    search = TextNASSearchModule(
        vocab_size=20,
        num_classes=2,
        supernet={"width": 8, "embed_dim": 8, "num_layers": 3, "k": 2},
        controller={"lr": 0.5},
    )
    hp = dict(search.hparams)
    assert hp["controller"] == plain(ControllerConfig(lr=0.5))
    assert (
        hp["supernet"]["num_layers"] == 3 and hp["supernet"]["cnn_keep"] == SupernetConfig.cnn_keep
    )
    again = TextNASSearchModule(**hp)
    assert again.ctrl_cfg == search.ctrl_cfg and again.search_cfg == search.search_cfg
    arch = Architecture.released().to_dict()
    retrain = TextNASRetrainModule(arch, 20, 2, network={"width": 8, "embed_dim": 8})
    assert retrain.hparams["optim"] == plain(RetrainOptimConfig())
    assert retrain.hparams["network"] == plain(TextNASOptions(width=8, embed_dim=8))
    with pytest.raises(ValueError, match="cnn_keep"):
        TextNASRetrainModule(arch, 20, 2, network={"cnn_keep": 0.0})
