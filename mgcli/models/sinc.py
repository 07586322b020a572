"""Learnable sinc band-pass filterbanks and the waveform normalisation in front of them.

SincConv is the SincNet layer (Ravanelli & Bengio, "Speaker recognition from raw
waveform with SincNet", SLT 2018), parametrised like asteroid-filterbanks' ParamSincFB.
MultiScaleSinc stacks several of them into the "learned spectrogram" of MS-SincResNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgcli import MgcError
from mgcli.audio import SAMPLE_RATE, hz_to_mel, mel_to_hz


class SincConv(nn.Module):
    """Learnable band-pass filterbank: each filter is the difference of two windowed sinc low-passes.

    Only the two cut-offs of each filter are learned (2 parameters per filter):
        f1 = min_low_hz + |low_hz|
        f2 = clamp(f1 + min_band_hz + |band_hz|, min_low_hz, sample_rate / 2)
        g[n] = (2 f2' sinc(2 pi f2' n) - 2 f1' sinc(2 pi f1' n)) * hamming[n],  f' = f / sample_rate
    for n = -(L-1)/2 ... (L-1)/2. The passband gain is about 1 by construction, so the filters
    are not peak-normalised (the official MS-SincResNet code normalises them to unit peak).

    As in SincNet and ParamSincFB, `low_hz` and `band_hz` start from K+1 mel-spaced edges over
    [init_low_hz, init_high_hz] (filter k spans edge k..k+1), and min_low_hz / min_band_hz are
    added on top: at init f1 = edge k + min_low_hz and f2 = edge k+1 + min_low_hz + min_band_hz.
    init_high_hz defaults to sample_rate / 2 - min_low_hz - min_band_hz (SincNet's choice), so the
    top filter starts just at the Nyquist frequency instead of clamped there without a gradient.

    The convolution is zero-padded by L // 2 on each side, so with stride 1 the output has as
    many time steps as the input (SincNet itself uses no padding).
    """

    def __init__(
        self,
        n_filters: int,
        kernel_size: int,
        sample_rate: int = SAMPLE_RATE,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        init_low_hz: float = 30.0,
        init_high_hz: float | None = None,
        stride: int = 1,
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise MgcError(f"sinc filter length must be odd (symmetric filters), got {kernel_size}")
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.sample_rate = sample_rate
        self.min_low_hz = min_low_hz
        self.min_band_hz = min_band_hz
        self.init_low_hz = init_low_hz
        nyquist_room = sample_rate / 2 - min_low_hz - min_band_hz
        self.init_high_hz = nyquist_room if init_high_hz is None else init_high_hz
        self.stride = stride

        mels = torch.linspace(float(hz_to_mel(self.init_low_hz)), float(hz_to_mel(self.init_high_hz)), n_filters + 1)
        edges_hz = mel_to_hz(mels)
        self.low_hz = nn.Parameter(edges_hz[:-1].clone())
        self.band_hz = nn.Parameter(edges_hz.diff())

        self.register_buffer("n", torch.arange(kernel_size) - (kernel_size - 1) / 2, persistent=False)
        # periodic=False: the symmetric, full-length window 0.54 - 0.46 cos(2 pi i / (L - 1)).
        self.register_buffer("window", torch.hamming_window(kernel_size, periodic=False), persistent=False)

    def cutoffs_hz(self) -> tuple[Tensor, Tensor]:
        """Effective (f1, f2) of every filter in Hz, each of shape [K]."""
        f1 = self.min_low_hz + self.low_hz.abs()
        f2 = torch.clamp(f1 + self.min_band_hz + self.band_hz.abs(), self.min_low_hz, self.sample_rate / 2)
        return f1, f2

    def filters(self) -> Tensor:
        """Filter taps, shape [K, 1, L]."""
        f1, f2 = self.cutoffs_hz()
        f1 = f1[:, None] / self.sample_rate
        f2 = f2[:, None] / self.sample_rate
        # torch.sinc(x) = sin(pi x) / (pi x), equal to 1 at 0 and with a finite gradient there.
        low_passes = 2 * f2 * torch.sinc(2 * f2 * self.n) - 2 * f1 * torch.sinc(2 * f1 * self.n)
        return (low_passes * self.window).unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 1, T] -> [B, K, T'] with T' = ceil(T / stride)."""
        return F.conv1d(x, self.filters(), stride=self.stride, padding=self.kernel_size // 2)

    def get_config(self) -> dict:
        return {
            "n_filters": self.n_filters,
            "kernel_size": self.kernel_size,
            "sample_rate": self.sample_rate,
            "min_low_hz": self.min_low_hz,
            "min_band_hz": self.min_band_hz,
            "init_low_hz": self.init_low_hz,
            "init_high_hz": self.init_high_hz,
            "stride": self.stride,
        }


class WaveformNorm(nn.Module):
    """Layer normalisation of each clip over its samples: [B, T] -> [B, T].

    affine=False (default) has no parameters, so it works for any T and for any position of the
    clip in the track. affine=True is the official MS-SincResNet code's nn.LayerNorm(clip_samples),
    with a gain and bias per sample position (2 * clip_samples parameters).
    """

    def __init__(self, clip_samples: int, affine: bool = False):
        super().__init__()
        self.clip_samples = clip_samples
        self.affine = affine
        self.norm = nn.LayerNorm(clip_samples) if affine else None

    def forward(self, wave: Tensor) -> Tensor:
        if self.norm is not None:
            return self.norm(wave)
        return F.layer_norm(wave, wave.shape[-1:])


def fft_conv_same(signal: Tensor, taps: Tensor, filters_per_pass: int = 32) -> Tensor:
    """F.conv1d(signal[None, None], taps, padding=L // 2)[0] for odd L, by FFT overlap-save: [S] -> [K, S].

    A direct convolution costs K * L multiply-adds per output sample; this costs a few dozen
    operations per sample whatever L is, which is what makes 1001-tap filters affordable.
    The signal is cut into overlapping blocks of n_fft = 8 (L - 1) rounded up to a power of two
    (short transforms stay in cache; each block yields n_fft - L + 1 outputs), and the filters
    are transformed a few at a time to bound the memory beside the [K, S] result.
    """
    n_filters, _, kernel_size = taps.shape
    length = signal.shape[-1]
    half = kernel_size // 2
    n_fft = max(256, 1 << (8 * (kernel_size - 1) - 1).bit_length())
    step = n_fft - kernel_size + 1
    n_blocks = -(-length // step)
    # Block b's circular convolution is exact from index L - 1 on: output samples b * step ... + step - 1.
    padded = F.pad(signal, (half, n_blocks * step + kernel_size - 1 - half - length))
    blocks = torch.fft.rfft(padded.unfold(0, n_fft, step), n_fft)  # [n_blocks, n_fft // 2 + 1]
    # conv1d is a cross-correlation: convolving with the reversed taps gives the same result.
    taps_spectrum = torch.fft.rfft(taps[:, 0].flip(-1), n_fft)
    out = signal.new_empty(n_filters, n_blocks, step)
    for first in range(0, n_filters, filters_per_pass):
        chunk = taps_spectrum[first : first + filters_per_pass, None, :]
        out[first : first + len(chunk)] = torch.fft.irfft(chunk * blocks, n_fft)[..., kernel_size - 1 :]
    return out.view(n_filters, -1)[:, :length]


class SincBank(nn.Module):
    """One scale of MultiScaleSinc: SincConv -> BatchNorm1d -> ReLU -> adaptive average pooling."""

    def __init__(self, sinc: SincConv, pooled_width: int):
        super().__init__()
        self.sinc = sinc
        self.norm = nn.BatchNorm1d(sinc.n_filters)
        self.pool = nn.AdaptiveAvgPool1d(pooled_width)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 1, T] -> [B, K, pooled_width]."""
        return self.pool(F.relu(self.norm(self.sinc(x))))

    def forward_span(self, span: Tensor, starts: list[int], clip_samples: int, mean: Tensor, std: Tensor) -> Tensor:
        """forward() of the layer-normalised clips span[s : s + clip_samples], from one pass over the span.

        Eval mode only. Convolution is linear, so for a clip with mean m and deviation d,
        conv(clip_norm) = (conv(span) - m * sum(taps)) / d away from the clip's edges, and
        BatchNorm folds into the same per-clip, per-filter scale and shift. Only the first and
        last L // 2 outputs of each clip, where its own zero padding matters, are convolved
        again from the clip. ReLU and pooling still run per clip: they follow the per-clip
        shift. Returns [len(starts), K, pooled_width].
        """
        taps = self.sinc.filters()
        half = self.sinc.kernel_size // 2
        # BatchNorm in eval mode: norm(y) = gain * y + offset, per filter.
        gain = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
        offset = self.norm.bias - gain * self.norm.running_mean
        scale = gain / std[:, None]  # [n_clips, K]
        shift = offset - scale * mean[:, None] * taps.sum(dim=(1, 2))
        if 2 * half >= clip_samples:  # filters as long as the clip: every output is an edge output
            clips = torch.stack([span[s : s + clip_samples] for s in starts])
            return self(((clips - mean[:, None]) / std[:, None]).unsqueeze(1))

        whole = fft_conv_same(span, taps)
        normed_edges = torch.stack(
            [torch.cat([span[s : s + 2 * half], span[s + clip_samples - 2 * half : s + clip_samples]]) for s in starts]
        )
        normed_edges = ((normed_edges - mean[:, None]) / std[:, None]).unsqueeze(1)
        left = F.conv1d(normed_edges[..., : 2 * half], taps, padding=half)[..., :half]
        right = F.conv1d(normed_edges[..., 2 * half :], taps, padding=half)[..., half:]
        left = left * gain[:, None] + offset[:, None]
        right = right * gain[:, None] + offset[:, None]
        z = span.new_empty(self.sinc.n_filters, clip_samples)  # reused: a fresh 30 MB per clip costs page faults
        pooled = []
        for i, start in enumerate(starts):
            torch.addcmul(shift[i, :, None], whole[:, start : start + clip_samples], scale[i, :, None], out=z)
            z[:, :half] = left[i]
            z[:, clip_samples - half :] = right[i]
            pooled.append(self.pool(z.relu_()))
        return torch.stack(pooled)


class MultiScaleSinc(nn.Module):
    """Sinc filterbanks of several lengths, stacked as image channels: [B, T] -> [B, n_banks, K, W]."""

    def __init__(
        self,
        n_filters: int,
        kernel_sizes: tuple[int, ...],
        pooled_width: int,
        sample_rate: int = SAMPLE_RATE,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        init_low_hz: float = 30.0,
    ):
        super().__init__()
        self.banks = nn.ModuleList(
            SincBank(SincConv(n_filters, size, sample_rate, min_low_hz, min_band_hz, init_low_hz), pooled_width)
            for size in kernel_sizes
        )

    def forward(self, wave: Tensor) -> Tensor:
        x = wave.unsqueeze(1)
        return torch.stack([bank(x) for bank in self.banks], dim=1)

    def forward_span(self, span: Tensor, hop: int, n_clips: int, clip_samples: int, eps: float = 1e-5) -> Tensor:
        """forward(WaveformNorm(clips)) for the clips span[i * hop : i * hop + clip_samples], i < n_clips.

        The exact fast path (eval mode): each bank filters the span once instead of every clip,
        which at a 0.5-s hop is six times less filtering, and with FFTs instead of direct
        convolution. `eps` is WaveformNorm's (F.layer_norm's default).
        """
        clips = span.unfold(0, clip_samples, hop)[:n_clips]
        variance, mean = torch.var_mean(clips, dim=1, unbiased=False)
        std = torch.sqrt(variance + eps)
        starts = [i * hop for i in range(n_clips)]
        return torch.stack([bank.forward_span(span, starts, clip_samples, mean, std) for bank in self.banks], dim=1)
