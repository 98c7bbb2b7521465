"""Resume: a search stopped after 2 epochs and resumed to 3 ends exactly where 3 straight do.

The checkpoint holds G's and D's weights, α, the three optimizers, the phase counters, the
position in the arch loader and the noise generator (the RNG callback keeps the global RNG), so
the resumed epoch draws the same z and the same batches and takes the same steps.
"""

from __future__ import annotations

import pytest
import torch

from experiments.run import train
from tests.e2e.alphagan.test_alphagan_search import gan_data, tiny_search  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["search.eval_every=0", "search.plots=false", "search.arch_steps=3"]


def _state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    return ckpt


def test_resumed_search_takes_the_same_steps(gan_data, tmp_path) -> None:  # noqa: F811
    straight = train(
        "alphagan_search_synthetic",
        tiny_search(tmp_path / "a", gan_data, *FAST, "trainer.max_epochs=3"),
    )
    first = train(
        "alphagan_search_synthetic",
        tiny_search(tmp_path / "b", gan_data, *FAST, "trainer.max_epochs=2"),
    )
    resumed = train(
        "alphagan_search_synthetic",
        tiny_search(tmp_path / "b", gan_data, *FAST, "trainer.max_epochs=3", "resume=last"),
    )
    assert resumed.run_dir == first.run_dir
    a, b = _state(straight.run_dir), _state(resumed.run_dir)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for sa, sb in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
            for k in sa:
                assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    assert torch.equal(a["alphagan_search"]["noise"][0], b["alphagan_search"]["noise"][0])
    assert a["alphagan_search"]["alpha_history"] == b["alphagan_search"]["alpha_history"]
    assert int(a["state_dict"]["arch_step"]) == 9 and int(a["state_dict"]["d_step"]) == 15
