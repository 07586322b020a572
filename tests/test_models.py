"""Tests of mgcli.models: tiny configs on the CPU, full-size models only on the meta device."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgcli import MgcError
from mgcli.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from mgcli.torch_engine import model_from_checkpoint
from mgcli.models import MODELS, build, count_parameters, describe, make_config
from mgcli.models.resnet import ResNet18, SpatialPyramidPool, load_torchvision_resnet18
from mgcli.models.sinc import MultiScaleSinc, SincConv, WaveformNorm
from mgcli.training.run_state import pretrained_weights

# A config per registered model, a few thousand times cheaper than the default; no dropout, so a
# few optimiser steps show learning. clip_samples is TINY_CLIP unless given here.
TINY = {
    "ms-sincresnet": dict(
        n_filters=8, kernel_sizes=(33, 65, 129), pooled_width=64, backbone_width=8, fc_hidden=16, dropout=0.0
    ),
    "sincresnet": dict(n_filters=8, kernel_sizes=(129,), pooled_width=64, backbone_width=8, fc_hidden=16, dropout=0.0),
    "sincnet": dict(n_filters=8, conv_channels=8, fc_size=32, pooled_width=16),
    "resnet-mel": dict(backbone_width=8, n_mels=32, fc_hidden=16, dropout=0.0),
    "samplecnn": dict(clip_samples=3**7, stem_channels=8, channels=(8, 8, 16, 16, 16, 16), dropout=0.0),
    "samplecnn-mlms": dict(
        clip_samples=3**7, stem_channels=8, channels=(8, 8, 8, 16, 16, 16), fc_hidden=16, dropout=0.0
    ),
    "bbnn": dict(n_mels=32, n_fft=256, hop_length=128, stem_channels=8, width=8, bottleneck=8, transition_channels=8),
    "broadcast": dict(
        n_mels=32, n_fft=256, hop_length=128, stem_channels=8, width=8, bottleneck=8, transition_channels=8
    ),
    "multi-input": dict(n_mels=32, n_fft=256, hop_length=128, n_filters=16, kernel_sizes=(17, 33), pooled_width=32,
                        channels=(4, 8, 8, 16), fc_hidden=16, dropout=0.0),
    "mel-linear": dict(n_mels=32, n_fft=256, hop_length=128),
    "musicnn": dict(pretrained="", freeze="none", timbral_filters=8, temporal_filters=4, midend_filters=8,
                    backend_units=16, dropout=0.0),
    "musicnn-probe": dict(pretrained="", timbral_filters=8, temporal_filters=4, midend_filters=8, backend_units=16,
                          dropout=0.0),
    "musicnn-ensemble": dict(pretrained="", freeze="none", members=2, timbral_filters=8, temporal_filters=4,
                             midend_filters=8, backend_units=16, dropout=0.0),
    "musicnn-vgg": dict(clip_samples=48000, filters=8, dropout=0.0),  # VGG needs a whole 187-frame patch
}
TINY_CLIP = 4000


def build_tiny(name: str, **overrides) -> nn.Module:
    return build(name, **{"clip_samples": TINY_CLIP, **TINY[name], **overrides})


def tones(n_samples: int, per_class: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of noisy sine clips, about 300 Hz and about 3 kHz: [2 * per_class, n_samples], labels."""
    t = np.arange(n_samples) / 16000
    rng = np.random.default_rng(0)
    waves, labels = [], []
    for label, base_hz in enumerate([300.0, 3000.0]):
        for _ in range(per_class):
            hz = base_hz * rng.uniform(0.9, 1.1)
            waves.append(np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi)) + 0.05 * rng.standard_normal(n_samples))
            labels.append(label)
    return torch.tensor(np.array(waves), dtype=torch.float32), torch.tensor(labels)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_sinc_filters(f1_hz, f2_hz, kernel_size, sample_rate):
    """The closed-form band-pass taps, written independently of the module, in float64."""
    n = np.arange(kernel_size) - (kernel_size - 1) / 2
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(kernel_size) / (kernel_size - 1))

    def low_pass(f_hz):
        f = f_hz[:, None] / sample_rate
        x = 2 * np.pi * f * n
        with np.errstate(invalid="ignore", divide="ignore"):
            sinc = np.where(x == 0, 1.0, np.sin(x) / x)
        return 2 * f * sinc

    return (low_pass(f2_hz) - low_pass(f1_hz)) * window


def test_sinc_filters_match_closed_form():
    sinc = SincConv(12, 101, sample_rate=16000)
    with torch.no_grad():
        sinc.low_hz.copy_(torch.empty(12).uniform_(-3000, 3000))
        sinc.band_hz.copy_(torch.empty(12).uniform_(-4000, 4000))
    low = sinc.low_hz.detach().double().numpy()
    band = sinc.band_hz.detach().double().numpy()
    f1 = 50.0 + np.abs(low)
    f2 = np.clip(f1 + 50.0 + np.abs(band), 50.0, 8000.0)
    expected = numpy_sinc_filters(f1, f2, 101, 16000)

    taps = sinc.filters()
    assert taps.shape == (12, 1, 101)
    np.testing.assert_allclose(taps[:, 0].detach().double().numpy(), expected, atol=1e-5)


def test_sinc_passband_gain_is_about_one():
    sinc = SincConv(1, 1001, sample_rate=16000)
    with torch.no_grad():
        sinc.low_hz.fill_(950.0)  # f1 = 1000 Hz
        sinc.band_hz.fill_(950.0)  # f2 = 2000 Hz
    taps = sinc.filters()[0, 0].detach().double().numpy()
    response = np.abs(np.fft.rfft(taps, 16000))  # 1 Hz bins
    assert response[1500] == pytest.approx(1.0, abs=0.01)
    assert response[500] < 0.01 and response[3000] < 0.01


def test_sinc_init_is_mel_spaced_and_learns_only_cutoffs():
    sinc = SincConv(40, 65, sample_rate=16000, init_low_hz=30.0)
    edges = torch.cat([sinc.low_hz[:1], sinc.low_hz + sinc.band_hz]).detach()
    assert edges[0].item() == pytest.approx(30.0, abs=1e-3)
    assert edges[-1].item() == pytest.approx(8000.0 - 50 - 50, rel=1e-4)  # room for the minimums
    assert (edges.diff() > 0).all() and (edges.diff().diff() > 0).all()  # widening bands: mel spacing
    f1, f2 = sinc.cutoffs_hz()
    assert (f1.diff() > 0).all() and (f2 > f1).all() and (f2 <= 8000).all()
    assert f2[-1].item() == pytest.approx(8000.0, rel=1e-4)  # the top filter reaches Nyquist, unclamped
    assert count_parameters(sinc) == 2 * 40

    x = torch.randn(2, 1, 500)
    out = sinc(x)
    assert out.shape == (2, 40, 500)  # padding L // 2 keeps the length
    (out**2).mean().backward()
    assert sinc.low_hz.grad.abs().sum() > 0 and sinc.band_hz.grad.abs().sum() > 0
    assert torch.isfinite(sinc.low_hz.grad).all() and torch.isfinite(sinc.band_hz.grad).all()

    assert sinc.get_config()["kernel_size"] == 65
    with pytest.raises(MgcError, match="odd"):
        SincConv(8, 64)


def test_waveform_norm():
    wave = 3.0 + 5.0 * torch.randn(4, 1000)
    out = WaveformNorm(1000)(wave)
    assert torch.allclose(out.mean(dim=1), torch.zeros(4), atol=1e-4)
    assert torch.allclose(out.std(dim=1, unbiased=False), torch.ones(4), atol=1e-3)
    assert count_parameters(WaveformNorm(1000)) == 0
    assert count_parameters(WaveformNorm(1000, affine=True)) == 2000


def test_multiscale_sinc_and_spp_shapes():
    bank = MultiScaleSinc(6, (17, 33), pooled_width=20)
    assert bank(torch.randn(2, 700)).shape == (2, 2, 6, 20)
    assert SpatialPyramidPool((1, 2))(torch.randn(2, 7, 5, 9)).shape == (2, 7 * 5)
    assert SpatialPyramidPool((1, 2)).out_features(7) == 35


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_forwards_and_rebuilds(name):
    model = build_tiny(name, n_classes=5)
    clip = model.config.clip_samples
    assert count_parameters(model) > 0
    logits = model(torch.randn(2, clip))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()

    rebuilt = build(name, **dataclasses.asdict(model.config))
    assert rebuilt.config == model.config
    ours = {key: value.shape for key, value in model.state_dict().items()}
    theirs = {key: value.shape for key, value in rebuilt.state_dict().items()}
    assert ours == theirs


@pytest.mark.parametrize("name", list(MODELS))
def test_adam_steps_lower_the_loss_on_tones(name):
    model = build_tiny(name, n_classes=2)
    waves, labels = tones(model.config.clip_samples)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(waves), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpoint_round_trip_gives_the_same_logits(name, tmp_path):
    model = build_tiny(name, n_classes=3)
    clip = model.config.clip_samples
    with torch.no_grad():
        model(torch.randn(4, clip))  # train mode: BatchNorm statistics move away from their initial values
    model.eval()
    path = tmp_path / "model.pt"
    save_checkpoint(make_checkpoint(name, model, ["a", "b", "c"]), path)
    loaded = model_from_checkpoint(load_checkpoint(path), torch.device("cpu"))
    assert loaded.name == name and loaded.labels == ["a", "b", "c"] and loaded.clip_samples == clip

    wave = torch.randn(2, clip)
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(wave), model(wave))


def test_describe_lists_every_model():
    rows = describe()
    assert [row["name"] for row in rows] == [
        "ms-sincresnet", "sincresnet", "sincnet", "resnet-mel",
        "samplecnn", "samplecnn-mlms", "bbnn", "broadcast", "multi-input", "mel-linear",
        "musicnn", "musicnn-probe", "musicnn-ensemble", "musicnn-vgg",
    ]  # fmt: skip
    for row in rows:
        assert row["parameters"] > 0 and row["summary"]


@pytest.mark.parametrize("name", ["bbnn", "broadcast"])
def test_broadcast_networks_have_about_180k_parameters(name):
    with torch.device("meta"):
        model = build(name)
    assert 0.8 * 180_000 <= count_parameters(model) <= 1.2 * 180_000


def test_broadcast_uses_lecun_normal_init():
    model = build("broadcast")
    weight = model.transition[0][0].weight  # 1x1 conv from the 544 broadcast channels
    assert weight.shape[1] == 32 + 4 * 128
    assert weight.std().item() == pytest.approx(544**-0.5, rel=0.05)
    assert model.classifier.bias.abs().sum() == 0


def test_default_samplecnn_reaches_one_time_step_on_meta_device():
    with torch.device("meta"):
        model = build("samplecnn")
        outputs = model.stack(torch.zeros(2, 59049))
        logits = model(torch.zeros(2, 59049))
    assert model.config.clip_samples == 59049 == 3**10
    assert [out.shape[-1] for out in outputs] == [3**k for k in range(8, -1, -1)]
    assert outputs[-1].shape == (2, 512, 1)
    assert logits.shape == (2, 10)


def test_default_samplecnn_mlms_branches_on_meta_device():
    with torch.device("meta"):
        model = build("samplecnn-mlms")
        outputs = [branch(torch.zeros(2, 59049)) for branch in model.branches]
    # Frame 3 keeps all 9 blocks and frame 9 the last 8: both end on the same widths and steps.
    assert [len(branch.blocks) for branch in model.branches] == [9, 8]
    for levels in outputs:
        assert [tuple(out.shape[1:]) for out in levels[-3:]] == [(128, 9), (128, 3), (256, 1)]
    assert model.head.fc1.in_features == 2 * (128 + 128 + 256)


def test_multi_input_exchanges_mid_level_maps_that_hooks_can_read():
    model = build_tiny("multi-input")
    maps = {}

    def keep(branch: str):
        return lambda module, inputs, output: maps.update({branch: output})

    for branch in ("mel_blocks", "sinc_blocks"):
        getattr(model, branch)[1].register_forward_hook(keep(branch))
    model(torch.randn(2, TINY_CLIP))
    assert maps["mel_blocks"].shape == (2, 8, 32 // 4, (TINY_CLIP // 128 + 1) // 4)
    assert maps["sinc_blocks"].shape == (2, 8, 16 // 4, 32 // 4)
    # The blocks after the exchange read both branches' channels.
    assert model.mel_blocks[2][0][0].in_channels == model.sinc_blocks[2][0][0].in_channels == 8 + 8


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("samplecnn", dict(clip_samples=48000), "too short for 9 blocks"),
        ("samplecnn-mlms", dict(clip_samples=3**4), "fewer than levels=3"),
        ("samplecnn-mlms", dict(levels=0), "levels must be"),
        ("bbnn", dict(clip_samples=1000), "too small"),
        ("multi-input", dict(exchange_after=4), "exchange_after must be"),
        ("multi-input", dict(n_filters=8), "at least 16"),
    ],
)
def test_impossible_configs_are_one_line_errors(name, overrides, message):
    with torch.device("meta"), pytest.raises(MgcError, match=message) as error:
        build(name, **overrides)
    assert "\n" not in str(error.value)


def test_default_ms_sincresnet_shapes_on_meta_device():
    with torch.device("meta"):
        model = build("ms-sincresnet")
        wave = torch.zeros(2, 48000)
        spectrogram = model.learned_spectrogram(wave)
        features = model.backbone(spectrogram)
        logits = model(wave)
    sinc_parameters = sum(p.numel() for bank in model.front_end.banks for p in bank.sinc.parameters())
    assert [bank.sinc.n_filters for bank in model.front_end.banks] == [160, 160, 160]
    assert sinc_parameters == 960
    assert spectrogram.shape == (2, 3, 160, 1024)
    assert features.shape == (2, 512, 5, 32)
    assert model.pool.out_features(512) == 2560
    assert logits.shape == (2, 10)


def test_registry_errors_and_json_lists():
    with pytest.raises(MgcError, match="ms-sincresnet"):  # the message lists the known names
        build("no-such-model")
    with pytest.raises(MgcError, match="n_filtres"):
        make_config("ms-sincresnet", n_filtres=8)
    assert make_config("ms-sincresnet", kernel_sizes=[251]).kernel_sizes == (251,)
    two_banks = dict(TINY["ms-sincresnet"], kernel_sizes=[33, 65])
    with pytest.raises(MgcError, match="1 or 3"):
        build("ms-sincresnet", **two_banks)


def torchvision_resnet18_state_dict(width: int) -> dict[str, torch.Tensor]:
    """A fake state dict with torchvision's resnet18 key names and shapes (written out here, not imported)."""
    state = {}

    def conv(name, out_channels, in_channels, size):
        state[f"{name}.weight"] = torch.randn(out_channels, in_channels, size, size)

    def bn(name, channels):
        state[f"{name}.weight"] = torch.rand(channels)
        state[f"{name}.bias"] = torch.randn(channels)
        state[f"{name}.running_mean"] = torch.randn(channels)
        state[f"{name}.running_var"] = torch.rand(channels)
        state[f"{name}.num_batches_tracked"] = torch.tensor(7)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    in_channels = width
    for layer, out_channels in enumerate([width, 2 * width, 4 * width, 8 * width], start=1):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            conv(f"{prefix}.conv1", out_channels, in_channels if block == 0 else out_channels, 3)
            bn(f"{prefix}.bn1", out_channels)
            conv(f"{prefix}.conv2", out_channels, out_channels, 3)
            bn(f"{prefix}.bn2", out_channels)
            if block == 0 and layer > 1:
                conv(f"{prefix}.downsample.0", out_channels, in_channels, 1)
                bn(f"{prefix}.downsample.1", out_channels)
        in_channels = out_channels
    state["fc.weight"] = torch.randn(1000, 8 * width)
    state["fc.bias"] = torch.randn(1000)
    return state


def load_resnet18_file(backbone: ResNet18, path) -> int:
    """A torchvision file onto a backbone, as training starts from it: read, then copied."""
    return load_torchvision_resnet18(backbone, pretrained_weights(str(path)), str(path))


def test_load_torchvision_resnet18(tmp_path):
    state = torchvision_resnet18_state_dict(width=8)
    assert len(state) == 122  # as torchvision's resnet18
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)

    backbone = ResNet18(width=8)
    assert load_resnet18_file(backbone, path) == 120  # all but fc.weight, fc.bias
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key

    # Older torchvision files have no num_batches_tracked.
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, path)
    assert load_resnet18_file(ResNet18(width=8), path) == 100


def test_load_torchvision_resnet18_errors(tmp_path):
    wrong_width = tmp_path / "wide.pth"
    torch.save(torchvision_resnet18_state_dict(width=16), wrong_width)
    with pytest.raises(MgcError, match="wide.pth.*backbone_width=64"):
        load_resnet18_file(ResNet18(width=8), wrong_width)

    with pytest.raises(MgcError, match="missing.pth"):
        load_resnet18_file(ResNet18(width=8), tmp_path / "missing.pth")

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(MgcError, match="garbage.pth"):
        load_resnet18_file(ResNet18(width=8), garbage)

    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(MgcError, match="not a state dict"):
        load_resnet18_file(ResNet18(width=8), not_a_dict)

    other_keys = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(1)}, other_keys)
    with pytest.raises(MgcError, match="not a torchvision resnet18"):
        load_resnet18_file(ResNet18(width=8), other_keys)
