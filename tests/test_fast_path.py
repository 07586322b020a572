"""The exact fast paths agree with the naive clip-by-clip paths they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_tone

from mgcli.inference import classify_files, track_outputs
from mgcli.models import MODELS, build
from mgcli.models.sinc import SincConv, fft_conv_same
from mgcli.torch_engine import GenreModel

TINY_SINC = dict(n_filters=8, kernel_sizes=(33, 65, 129), pooled_width=64, fc_hidden=16)
TINY = {
    "ms-sincresnet": dict(TINY_SINC, backbone_width=8),
    "sincresnet": dict(TINY_SINC, backbone_width=8, kernel_sizes=(129,)),
    "multi-input": dict(TINY_SINC, n_mels=16, channels=(4, 8), exchange_after=1),
}
with torch.device("meta"):  # shapes only: which models declare the exact fast path
    FAST_MODELS = [name for name in MODELS if build(name).has_fast_path]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kernel_size, length", [(33, 1000), (129, 5000), (251, 300), (1001, 20_000)])
def test_fft_convolution_equals_direct_convolution(kernel_size, length):
    torch.manual_seed(0)
    taps = SincConv(40, kernel_size).filters().detach()
    signal = torch.randn(length)
    direct = F.conv1d(signal[None, None], taps, padding=kernel_size // 2)[0]
    torch.testing.assert_close(fft_conv_same(signal, taps), direct, atol=2e-5, rtol=0)


def tiny_eval_model(name: str, clip_samples: int, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build(name, **TINY[name], clip_samples=clip_samples, n_classes=4, **overrides)
    for module in model.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(-1.0, 1.0)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("name", FAST_MODELS)
@pytest.mark.parametrize("hop", [500, 1_000, 4_000, 5_000])
def test_span_logits_equal_clip_by_clip_logits(name, hop):
    clip_samples = 4_000
    model = tiny_eval_model(name, clip_samples)
    rng = np.random.default_rng(1)
    n_clips = 7
    span = rng.standard_normal(clip_samples + (n_clips - 1) * hop).astype(np.float32)
    span[: 3 * hop // 2] *= 0.01  # clips of very different loudness: the per-clip norm matters
    span[-clip_samples // 3 :] = 0.0  # a zero-padded tail clip
    x = torch.from_numpy(span)
    with torch.inference_mode():
        naive = model(x.unfold(0, clip_samples, hop)[:n_clips].contiguous())
        fast = model.span_logits(x, hop, n_clips)
    assert fast.shape == naive.shape == (n_clips, 4)
    torch.testing.assert_close(fast, naive, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", FAST_MODELS)
def test_span_logits_refuses_training_mode_and_a_span_too_short_for_its_clips(name):
    model = tiny_eval_model(name, 4_000)
    with pytest.raises(ValueError, match="fewer than 3 clips"):  # a bug, not a user error: it keeps its traceback
        model.span_logits(torch.zeros(5_000), 1_000, 3)
    with pytest.raises(ValueError, match="eval mode"):
        model.train().span_logits(torch.zeros(5_000), 1_000, 2)


def test_span_logits_refuses_a_positional_waveform_norm():
    positional = tiny_eval_model("ms-sincresnet", 4_000, norm_affine=True)
    with pytest.raises(ValueError, match="norm_affine"):
        positional.span_logits(torch.zeros(5_000), 1_000, 2)


def test_a_model_without_an_exact_fast_path_is_classified_clip_by_clip():
    network = tiny_eval_model("ms-sincresnet", 4_000, norm_affine=True)
    model = GenreModel("ms-sincresnet", network, ["a", "b", "c", "d"], torch.device("cpu"))
    wave = np.random.default_rng(3).standard_normal(20_000).astype(np.float32)
    with torch.inference_mode():
        clips = torch.from_numpy(wave).unfold(0, 4_000, 2_000)
        expected = network(clips).numpy()
    np.testing.assert_allclose(track_outputs(model, [wave], hop=2_000, batch_size=4).logits, expected, atol=1e-5)


def test_tracks_and_folders_score_the_same_with_and_without_the_fast_path(tmp_path):
    network = tiny_eval_model("ms-sincresnet", 8_000)
    model = GenreModel("ms-sincresnet", network, ["a", "b", "c", "d"], torch.device("cpu"))
    naive = GenreModel("ms-sincresnet", network, model.labels, model.device, fast_path=False)
    wave = np.random.default_rng(2).standard_normal(100_000).astype(np.float32)
    np.testing.assert_allclose(
        track_outputs(model, [wave], hop=2_000, batch_size=5).logits, track_outputs(naive, [wave], hop=2_000, batch_size=16).logits, atol=1e-4
    )

    paths = [write_tone(tmp_path / f"{i}.wav", 200 + 500 * i, 0.3 + i, rate=16_000) for i in range(4)]
    paths.insert(2, tmp_path / "missing.wav")
    fast_results = list(classify_files(model, paths, hop_seconds=0.25, batch_size=4))
    naive_results = list(classify_files(naive, paths, hop_seconds=0.25, batch_size=3))
    assert [r.path for r in fast_results] == [r.path for r in naive_results] == [str(p) for p in paths]
    assert "missing.wav" in fast_results[2].error and "missing.wav" in naive_results[2].error
    for fast, slow in zip(fast_results, naive_results):
        assert fast.clips == slow.clips
        if not fast.error:
            np.testing.assert_allclose(fast.probabilities, slow.probabilities, atol=1e-4)
