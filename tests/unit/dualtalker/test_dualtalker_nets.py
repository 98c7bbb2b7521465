"""DualTalker's networks: wav2vec loading and alignment, masks, batching, AR decoding."""

from __future__ import annotations

import pytest
import torch

from datamodules.errors import DataError
from lightning_modules.dualtalker import (
    AudioEncoderError,
    CharVocab,
    DualTalker,
    DualTalkerOptions,
    compute_losses,
    load_wav2vec,
)
from lightning_modules.dualtalker.audio_encoder import align, audio_frames
from lightning_modules.dualtalker.motion import MotionDecoder, alignment_mask, periodic_alibi_bias

V, SUBJECTS = 40, 3


def make_net(fps: int = 30, **overrides) -> DualTalker:
    torch.manual_seed(0)
    options = DualTalkerOptions(
        **{"audio_encoder": "tiny", "feature_dim": 16, "dual_target": "both", **overrides}
    )
    dataset = "biwi" if fps == 25 else "vocaset"  # the data set fixes the alignment
    return DualTalker(
        options, num_vertices=V, num_subjects=SUBJECTS, fps=fps, vocab=CharVocab(), dataset=dataset
    )


def make_batch(frames: list[int], fps: int = 30, seed: int = 0) -> dict:
    """Padded batch in the datamodule's format; audio a little longer than the motion."""
    g = torch.Generator().manual_seed(seed)
    samples = [int(n / fps * 16000) + 400 for n in frames]
    b, t, s = len(frames), max(frames), max(samples)
    audio_mask = torch.arange(s)[None] < torch.tensor(samples)[:, None]
    frame_mask = torch.arange(t)[None] < torch.tensor(frames)[:, None]
    template = torch.randn(b, 3 * V, generator=g)
    vertices = template[:, None] + 0.01 * torch.randn(b, t, 3 * V, generator=g)
    return dict(
        audio=torch.randn(b, s, generator=g) * audio_mask,
        audio_mask=audio_mask,
        vertices=vertices * frame_mask[..., None],
        frame_mask=frame_mask,
        template=template,
        style=torch.arange(b) % SUBJECTS,
        text=["hello there", "", "a b c"][:b],
        names=[f"seq{i}" for i in range(b)],
    )


def single(batch: dict, i: int) -> dict:
    """Sequence i alone, unpadded."""
    n, s = int(batch["frame_mask"][i].sum()), int(batch["audio_mask"][i].sum())
    out = {k: v[i : i + 1] for k, v in batch.items() if torch.is_tensor(v)}
    for key in ("audio", "audio_mask"):
        out[key] = out[key][:, :s]
    for key in ("vertices", "frame_mask"):
        out[key] = out[key][:, :n]
    out["text"], out["names"] = batch["text"][i : i + 1], batch["names"][i : i + 1]
    return out


def randomise_head(net: DualTalker) -> None:
    with torch.no_grad():
        net.head.weight.normal_(0, 0.05)
        net.head.bias.normal_(0, 0.01)


def test_alignment_masks_for_30_and_25_fps() -> None:
    assert torch.equal(alignment_mask(4, 1), torch.eye(4, dtype=torch.bool))
    expected = torch.tensor(
        [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(alignment_mask(3, 2), expected)


def test_feature_alignment_30_fps_interpolates_25_fps_pairs() -> None:
    features = torch.arange(11.0)[:, None].repeat(1, 2)  # a 50 Hz ramp 0..10
    voca = align(features, 7, tokens_per_frame=1)
    assert voca.shape == (7, 2)
    assert torch.allclose(voca[:, 0], torch.linspace(0, 10, 7))  # align_corners=True
    assert align(features, 4, tokens_per_frame=2).shape == (8, 2)  # cut to 2 x frames
    assert align(features, 8, tokens_per_frame=2).shape == (10, 2)  # odd count: last dropped


@pytest.mark.parametrize("fps", [30, 25])
def test_memory_tokens_per_frame_and_short_audio(fps: int) -> None:
    net = make_net(fps).eval()
    batch = make_batch([20, 12], fps)
    out = net(**batch, teacher_forcing=True)
    assert out.vertices.shape == (2, 20, 3 * V)
    assert out.audio_features.shape == (2, 20, 16)
    samples = batch["audio_mask"].sum(1)
    for b, n in enumerate([20, 12]):
        expected = n if fps == 30 else min(n, audio_frames(int(samples[b]), fps))
        assert int(out.frame_mask[b].sum()) == expected
    # BIWI audio shorter than the motion: the frames beyond round(seconds x 25) are dropped.
    short = make_batch([25], 25)
    short["audio"], short["audio_mask"] = short["audio"][:, :8000], short["audio_mask"][:, :8000]
    if fps == 25:
        assert int(net(**short).frame_mask.sum()) == audio_frames(8000, 25) == 13  # 12.5 up


def test_tiny_is_seeded_and_round_trips_through_save_pretrained(tmp_path) -> None:
    a, b = load_wav2vec("tiny"), load_wav2vec("tiny")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    a.save_pretrained(tmp_path / "w2v")
    loaded = load_wav2vec(str(tmp_path / "w2v"))
    x = torch.randn(1, 8000)
    assert torch.allclose(a.eval()(x).last_hidden_state, loaded.eval()(x).last_hidden_state)


def test_a_path_without_a_model_is_one_clear_error(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "config_only").mkdir()
    load_wav2vec("tiny").config.save_pretrained(tmp_path / "config_only")
    (tmp_path / "file.bin").write_bytes(b"\0")
    cases = {
        "empty": "holds no model",
        "config_only": "holds no model",
        "missing": "does not exist",
        "file.bin": "is a file",
    }
    for name, reason in cases.items():
        with pytest.raises(AudioEncoderError) as error:
            load_wav2vec(str(tmp_path / name))
        message = str(error.value)
        assert isinstance(error.value, DataError)  # the entry point prints it as one line
        assert message.startswith("model.audio_encoder=") and str(tmp_path / name) in message
        assert reason in message and "\n" not in message


def test_frozen_cnn_features_are_cached_by_sequence_name() -> None:
    net = make_net().eval()
    assert not any(
        p.requires_grad for p in net.audio_encoder.wav2vec.feature_extractor.parameters()
    )
    calls = []
    net.audio_encoder.wav2vec.feature_extractor.register_forward_hook(lambda *_: calls.append(1))
    batch = make_batch([10, 8])
    first = net(**batch, teacher_forcing=True)
    second = net(**batch, teacher_forcing=True)
    assert len(calls) == 2 and len(net.audio_encoder.cache) == 2  # one CNN call per sequence
    assert torch.equal(first.audio_features, second.audio_features)
    net(**{**batch, "names": None}, teacher_forcing=True)
    assert len(calls) == 4  # no names: no cache


@pytest.mark.parametrize("teacher_forcing", [True, False])
def test_the_untrained_model_outputs_the_template(teacher_forcing: bool) -> None:
    net = make_net().train()
    batch = make_batch([9, 6])
    out = net(**batch, teacher_forcing=teacher_forcing)
    assert torch.equal(out.vertices, batch["template"][:, None].expand_as(out.vertices))
    verts, mask = net.predict(
        batch["audio"], batch["template"], batch["style"], batch["audio_mask"]
    )
    assert torch.equal(verts, batch["template"][:, None].expand_as(verts))
    assert mask.shape == verts.shape[:2]


@pytest.mark.parametrize("fps,teacher_forcing", [(30, True), (30, False), (25, True), (25, False)])
def test_batched_equals_per_sequence(fps: int, teacher_forcing: bool) -> None:
    """Padded batch: the real frames' outputs, each loss and the gradients equal per-sequence
    runs (the batch loss is the mean of the sequences' losses)."""
    terms = "cosine+infonce+cycle+duality"
    net = make_net(fps, consistency=terms, lambda_vel=0.5, duality_sigma_vertex=0.1).eval()
    randomise_head(net)
    batch = make_batch([14, 9, 5], fps)
    out = net(**batch, teacher_forcing=teacher_forcing)
    losses = compute_losses(out, net.options)
    net.zero_grad()
    losses["loss"].backward()
    batched_grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    singles = []
    net.zero_grad()
    for i in range(3):
        one = net(**single(batch, i), teacher_forcing=teacher_forcing)
        n = int(one.frame_mask.sum())
        assert torch.allclose(out.vertices[i, :n], one.vertices[0, :n], atol=1e-5)
        assert torch.allclose(out.lip_features[i, :n], one.lip_features[0, :n], atol=1e-5)
        assert torch.equal(out.frame_mask[i, :n], one.frame_mask[0, :n])
        singles.append(compute_losses(one, net.options))
        (singles[-1]["loss"] / 3).backward()
    for key in losses:
        mean = torch.stack([s[key] for s in singles]).mean()
        assert torch.allclose(losses[key], mean, rtol=1e-4, atol=1e-7), key
    for name, grad in batched_grads.items():
        assert torch.allclose(
            grad, dict(net.named_parameters())[name].grad, rtol=1e-3, atol=1e-7
        ), name


def test_kv_cached_autoregression_equals_faceformers_prefix_rerun() -> None:
    """FaceFormer re-runs the decoder on the whole prefix at every step; the cache must agree."""
    net = make_net().eval()
    randomise_head(net)
    batch = make_batch([12, 7])
    tokens, _ = net.audio_encoder(batch["audio"], batch["audio_mask"], batch["frame_mask"].sum(1))
    style = net.style(torch.nn.functional.one_hot(batch["style"], SUBJECTS).float())
    mask = torch.ones(2, 12, dtype=torch.bool)
    inputs = style[:, None]
    for _ in range(12):  # FaceFormer's predict loop
        out = net.head(net.decoder(net.ppe(inputs), tokens, mask[:, : inputs.shape[1]]))
        inputs = torch.cat([inputs, net.motion_encoder(out[:, -1:]) + style[:, None]], dim=1)
    cached = net.autoregress(tokens, style, 12)
    assert torch.allclose(cached, out, atol=1e-5)


def test_spec_augment_only_in_training() -> None:
    net = make_net()
    batch = make_batch([15])
    args = (batch["audio"], batch["audio_mask"], batch["frame_mask"].sum(1))
    net.eval()
    a = net.audio_encoder(*args)[0]
    assert torch.equal(a, net.audio_encoder(*args)[0])
    net.train()
    torch.manual_seed(1)
    b = net.audio_encoder(*args)[0]
    torch.manual_seed(1)
    assert torch.equal(b, net.audio_encoder(*args)[0])  # seeded
    assert not torch.allclose(a, b)


def test_predict_takes_its_length_from_the_audio() -> None:
    net = make_net().eval()
    audio = torch.randn(1, 32000)  # 2 s
    verts, mask = net.predict(audio, torch.zeros(1, 3 * V), torch.tensor([1]))
    assert verts.shape[1] == audio_frames(32000, 30) == 60 and bool(mask.all())
    fixed, _ = net.predict(
        audio, torch.zeros(1, 3 * V), torch.tensor([1]), num_frames=torch.tensor([17])
    )
    assert fixed.shape == (1, 17, 3 * V)


def test_char_vocab_and_greedy_decoding() -> None:
    vocab = CharVocab()
    ids = vocab.encode("Hello, World")
    assert vocab.decode(ids) == "hello world" and 0 not in ids
    log_probs = torch.full((6, len(vocab)), -10.0)
    for t, c in enumerate([ids[0], ids[0], 0, ids[1], 0, ids[1]]):
        log_probs[t, c] = 0.0
    assert vocab.greedy(log_probs) == "hee"
    padded, lengths = vocab.batch(["ab", ""])
    assert padded.tolist() == [[3, 4], [0, 0]] and lengths.tolist() == [2, 0]


def test_decoder_equals_torchs_transformer_decoder_as_faceformer_builds_it() -> None:
    """FaceFormer's decoder is nn.TransformerDecoder(1 layer, d, 4 heads, FFN 2d, batch_first)
    with its (heads, T, T) ALiBi mask and boolean alignment mask; with the weights copied, ours
    gives the same output for a single sequence."""
    torch.manual_seed(0)
    d, heads, length = 16, 4, 9
    reference = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(d, heads, 2 * d, batch_first=True), num_layers=1
    ).eval()
    ours = MotionDecoder(d, 1, heads, 2 * d, 0.1, period=3, tokens_per_frame=2).eval()
    ref, mine = reference.layers[0], ours.layers[0]
    with torch.no_grad():
        mine.self_attn.qkv.weight.copy_(ref.self_attn.in_proj_weight)
        mine.self_attn.qkv.bias.copy_(ref.self_attn.in_proj_bias)
        mine.self_attn.out.load_state_dict(ref.self_attn.out_proj.state_dict())
        mine.cross_attn.q.weight.copy_(ref.multihead_attn.in_proj_weight[:d])
        mine.cross_attn.q.bias.copy_(ref.multihead_attn.in_proj_bias[:d])
        mine.cross_attn.kv.weight.copy_(ref.multihead_attn.in_proj_weight[d:])
        mine.cross_attn.kv.bias.copy_(ref.multihead_attn.in_proj_bias[d:])
        mine.cross_attn.out.load_state_dict(ref.multihead_attn.out_proj.state_dict())
        mine.ffn[0].load_state_dict(ref.linear1.state_dict())
        mine.ffn[3].load_state_dict(ref.linear2.state_dict())
        for n in ("norm1", "norm2", "norm3"):
            getattr(mine, n).load_state_dict(getattr(ref, n).state_dict())
    tokens, memory = torch.randn(1, length, d), torch.randn(1, 2 * length, d)
    expected = reference(
        tokens,
        memory,
        tgt_mask=periodic_alibi_bias(heads, length, 3),
        memory_mask=~alignment_mask(length, 2),
    )
    got = ours(tokens, memory, torch.ones(1, length, dtype=torch.bool))
    assert torch.allclose(got, expected, atol=1e-5)
