"""Image feature extractors for FID and IS, and the TF protocol's conversion to uint8.

* ``inception``: torch-fidelity's ``FeatureExtractorInceptionV3``, the TF ``inception-2015-12-05``
  graph of the papers' IS/FID code ported to PyTorch (torch-fidelity 0.4.0,
  ``torch_fidelity/feature_extractor_inceptionv3.py``). Images go in at their own size and are
  resized to 299 by torch-fidelity's TF1-compatible bilinear resize (no antialiasing, as the TF
  graph), then ``(x - 128) / 128``. Features: the 2048-d pool_3; logits: the 1008 logits
  without the fc bias (``logits_unbiased``), which are what the OpenAI IS code softmaxes.
  Weights come from a local file (``metrics.inception_weights``): the one torch-fidelity itself
  downloads, ``weights-inception-2015-12-05-6726825d.pth``. Without a path, the file in the
  torch hub cache is used, or downloaded where a network is allowed.
* ``standin``: a small frozen random conv network (seeded, deterministic) for CPU runs, tests and
  the search's progress readout. Its distances are **not comparable to published FID**: its
  name, and every key built from it, contain ``standin``.

Both are frozen and their network is held *outside* the module tree (see
:class:`FrozenExtractor`): it follows ``.to(device)`` but is never in a ``state_dict`` (no 95 MB
of Inception in every checkpoint), stays in eval mode whatever a parent's ``.train()`` does, and
always runs in float32 with autocast and TF32 off, whatever precision the Trainer runs the rest
in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from datamodules.errors import DataError

#: The file torch-fidelity downloads (v0.2.0 release asset), and where it would fetch it from.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
)
EXTRACTORS = ("inception", "standin")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] to uint8 as the papers' evaluation code does (alphaGAN
    ``functions.py``, AutoGAN's): ``x * 127.5 + 127.5``, clamped to [0, 255], then truncated
    (cast), not rounded. uint8 input is returned unchanged."""
    if images.dtype == torch.uint8:
        return images
    return images.float().mul(127.5).add_(127.5).clamp_(0.0, 255.0).to(torch.uint8)


@contextlib.contextmanager
def _exact_float32(device: torch.device) -> Iterator[None]:
    """Autocast off, and TF32 off for cuDNN convolutions and matmuls, restored afterwards."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


class FrozenExtractor(nn.Module):
    """A frozen feature network kept out of the module tree.

    ``extractor(images)`` takes uint8 images (N, 3, H, W) and returns ``(features, logits)``:
    features (N, ``feature_dim``) in float64, logits (N, 1008) in float32, or ``None`` when the
    network has no classifier. Attributes: ``name`` (goes into cache keys and metric names),
    ``feature_dim``, ``comparable`` (whether the numbers compare with published FID/IS).
    """

    name: str = ""
    feature_dim: int = 0
    comparable: bool = False

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.requires_grad_(False).eval().float()
        object.__setattr__(self, "net", net)  # not a child: no state_dict, no train()

    def _apply(self, fn, recurse: bool = True):  # .to(device), .cuda(), ...
        self.net._apply(fn)
        self.net.float()  # a parent's .half()/.double() must not change the network
        return super()._apply(fn, recurse)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected uint8 images (N, 3, H, W) (see to_uint8), got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        images = images.to(self.device)
        with _exact_float32(images.device):
            features, logits = self._run(images)
        return features.double(), logits


class StandinExtractor(FrozenExtractor):
    """Frozen random features: three 3x3 convs with ReLU (strides 1, 2, 2) on ``x / 127.5 - 1``,
    then the channel means and standard deviations over space (``2 * width`` features).

    Random conv features respond to colour, edges and texture statistics, so the distance
    falls as G's samples come to look like the real images; it is a stand-in that needs no
    weights, **not** comparable to published FID."""

    comparable = False

    def __init__(self, width: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        channels = 3
        for stride in (1, 2, 2):
            conv = nn.Conv2d(channels, width, 3, stride=stride, padding=1)
            with torch.no_grad():
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=g) * (2.0 / (9 * channels)) ** 0.5
                )
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            channels = width
        super().__init__(nn.Sequential(*layers))
        self.name = f"standin-randconv{width}-seed{seed}"
        self.feature_dim = 2 * width

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = self.net(images.float() / 127.5 - 1.0).flatten(2)
        return torch.cat([h.mean(-1), h.std(-1, correction=0)], dim=1), None


def _weights_error(path: Path, why: str) -> DataError:
    return DataError(
        f"metrics.inception_weights={path}: {why}; put torch-fidelity's Inception weights there "
        f"({INCEPTION_FILE}, from {INCEPTION_URL}), or use metrics.extractor=standin "
        "(not comparable to published FID)"
    )


def _default_weights() -> Path | None:
    """The file in the torch hub cache, downloaded first where a network is allowed."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)
    except Exception:  # offline: said in the error below
        return None
    return cached


def load_inception_state(path: str | Path, expected: dict[str, torch.Size]) -> dict:
    """The state dict in ``path`` (``torch.load`` with ``weights_only=True``), checked against the
    names and shapes of ``expected``; a :class:`DataError` naming the file when it does not fit."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise _weights_error(path, "no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, a pickle of something else
        why = (
            f"cannot be read as a PyTorch state dict ({type(e).__name__}: truncated, or not "
            "a file written by torch.save)"
        )
        raise _weights_error(path, why) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise _weights_error(path, "is not a state dict of tensors")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise _weights_error(
            path,
            f"not the weights of torch-fidelity's InceptionV3 ({len(missing)} keys missing, e.g. "
            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})",
        )
    for k, shape in expected.items():
        if state[k].shape != shape:
            raise _weights_error(
                path, f"{k} has shape {tuple(state[k].shape)}, InceptionV3 needs {tuple(shape)}"
            )
    return state


def inception_shapes() -> dict[str, torch.Size]:
    """Names and shapes of ``FeatureExtractorInceptionV3``'s state dict (built on the meta device,
    without weights)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    class _Skeleton(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the skeleton loads nothing
            return None

    with torch.device("meta"), _patched(fe, "load_state_dict_from_url", lambda *a, **k: {}):
        net = _Skeleton("inception-v3-compat", ["2048"])
    return {k: v.shape for k, v in net.state_dict().items()}


@contextlib.contextmanager
def _patched(obj, name: str, value) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _resolve_weights(weights: str | Path | None) -> Path:
    path = Path(weights).expanduser() if weights else _default_weights()
    if path is None:
        raise DataError(
            f"metrics.inception_weights is not set and {INCEPTION_FILE} is neither in the "
            f"torch hub cache ({Path(torch.hub.get_dir()) / 'checkpoints'}) nor downloadable "
            f"here; download it from {INCEPTION_URL} and set metrics.inception_weights=PATH, "
            "or use metrics.extractor=standin (not comparable to published FID)"
        )
    return path


class InceptionExtractor(FrozenExtractor):
    """torch-fidelity's TF-ported InceptionV3: pool_3 features (2048) and bias-free logits."""

    name = "inception-v3-tf-2015-12-05"
    feature_dim = 2048
    comparable = True

    def __init__(self, weights: str | Path | None = None) -> None:
        path = _resolve_weights(weights)
        from torch_fidelity import feature_extractor_inceptionv3 as fe

        state = load_inception_state(path, inception_shapes())
        # torch-fidelity's own loading, fed the state dict checked above (read once, and with
        # torch.load's weights_only=True rather than its weights_only=False)
        with _patched(fe, "load_state_dict_from_url", lambda *a, **k: state):
            net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
        super().__init__(net)
        self.weights = str(path)

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self.net(images)
        return features, logits


def build_extractor(kind: str, weights: str | Path | None = None) -> FrozenExtractor:
    """``inception`` (torch-fidelity's InceptionV3, weights from ``weights``, see
    :class:`InceptionExtractor`) or ``standin`` (:class:`StandinExtractor`, not comparable)."""
    if kind == "inception":
        return InceptionExtractor(weights)
    if kind == "standin":
        return StandinExtractor()
    raise DataError(f"metrics.extractor: expected one of {', '.join(EXTRACTORS)}, got '{kind}'")


def check_extractor(kind: str, weights: str | Path | None = None) -> int:
    """The feature dimension of extractor ``kind``, after checking what it needs (the Inception
    weights file: readable, torch-fidelity's keys and shapes) without building the network: a
    config check before a run starts. A :class:`DataError` naming the key or file otherwise."""
    if kind == "inception":
        load_inception_state(_resolve_weights(weights), inception_shapes())
        return InceptionExtractor.feature_dim
    if kind == "standin":
        return StandinExtractor().feature_dim
    raise DataError(f"metrics.extractor: expected one of {', '.join(EXTRACTORS)}, got '{kind}'")
