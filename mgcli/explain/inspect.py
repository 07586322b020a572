"""What a model learned and how it sees a clip: the numbers behind `mgc inspect`.

- `sinc_filters`: every sinc bank's learned cut-offs beside its mel-scale start, its taps and
  their frequency responses (SincNet's filters are two numbers each, so they can be read).
- `clip_spectrograms`: one clip's learned multi-scale sinc representation beside its mel,
  linear, harmonic and percussive spectrograms (MS-SincResNet's figure 4), the last two by
  median-filtering HPSS (`hpss`, Fitzgerald 2010).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import MgcError
from ..audio import SAMPLE_RATE, load
from ..clips import clip_at
from ..inference import GenreModel
from ..models.mel import LOG_FLOOR, LogMel
from ..models.sinc import MultiScaleSinc, SincConv

# The hand-made spectrograms of `clip_spectrograms`: the paper's mel settings (window 512, hop 128 at 16 kHz).
N_FFT = 512

HOP_LENGTH = 128

N_MELS = 128

HPSS_KERNEL = 17  # median filter length, in frames and in bins (Fitzgerald's choice)



@dataclass
class SincFilters:
    """One learned sinc bank: every filter's cut-offs now and at initialisation, its taps and frequency responses."""

    name: str  # where the bank sits in the network, e.g. front_end.banks.0.sinc
    sample_rate: int
    low_hz: np.ndarray  # [K] learned low cut-offs f1
    high_hz: np.ndarray  # [K] learned high cut-offs f2
    init_low_hz: np.ndarray  # [K] the mel-scale start of f1
    init_high_hz: np.ndarray  # [K] the mel-scale start of f2
    taps: np.ndarray  # [K, L] impulse responses
    response_hz: np.ndarray  # [n_freqs]
    response_db: np.ndarray  # [K, n_freqs] magnitude responses, 20 log10 |H|; the passband is near 0 dB



def sinc_filters(network: nn.Module, n_fft: int = 4096) -> list[SincFilters]:
    """Every SincConv in the network (ms-sincresnet, sincresnet, sincnet, multi-input), in module order."""
    banks = []
    for name, sinc in network.named_modules():
        if not isinstance(sinc, SincConv):
            continue
        with torch.no_grad():
            low, high = sinc.cutoffs_hz()
            # A fresh bank with the same settings starts where this one started: the mel-spaced edges.
            init_low, init_high = SincConv(**sinc.get_config()).cutoffs_hz()
            taps = sinc.filters()[:, 0].float().cpu()
            size = max(n_fft, sinc.kernel_size)
            magnitude = torch.fft.rfft(taps, n=size).abs()
        banks.append(
            SincFilters(
                name,
                sinc.sample_rate,
                low.cpu().numpy(),
                high.cpu().numpy(),
                init_low.numpy(),
                init_high.numpy(),
                taps.numpy(),
                np.fft.rfftfreq(size, 1 / sinc.sample_rate),
                (20 * torch.log10(magnitude + 1e-8)).numpy(),
            )
        )
    return banks



@dataclass
class ClipSpectrograms:
    """One clip seen by the network's sinc front end and by four hand-made spectrograms (log power)."""

    path: str
    start: float  # seconds
    clip_seconds: float
    learned: np.ndarray | None  # [n_banks, K, W]: the multi-scale sinc representation; None without one
    learned_taps: list[int]  # filter length of each bank of `learned`
    mel: np.ndarray  # [N_MELS, frames]
    linear: np.ndarray  # [N_FFT // 2 + 1, frames]
    harmonic: np.ndarray  # [N_FFT // 2 + 1, frames]
    percussive: np.ndarray  # [N_FFT // 2 + 1, frames]



def clip_spectrograms(model: GenreModel, path: str | Path, start: float | None = None) -> ClipSpectrograms:
    """The clip of `path` from `start` seconds (default: the middle of the track), as MS-SincResNet's figure 4 shows it.

    The learned representation is the output of the network's MultiScaleSinc on the layer-normalised
    clip (ms-sincresnet, sincresnet, multi-input); other models have none.
    """
    wave = load(path)
    length = model.clip_samples
    first = max(0, (len(wave) - length) // 2) if start is None else round(start * SAMPLE_RATE)
    if not 0 <= first < len(wave):
        raise MgcError(f"--start {start} s is outside {path} ({len(wave) / SAMPLE_RATE:.1f} s long)")
    clip = torch.from_numpy(clip_at(wave, first, length))
    network = model.network
    fronts = [m for m in network.modules() if isinstance(m, MultiScaleSinc)]
    learned = None
    with torch.no_grad():
        if fronts:
            learned = fronts[0](network.wave_norm(clip[None].to(model.device)))[0].float().cpu().numpy()
        mel = LogMel(SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS)(clip)
        spectrum = torch.stft(clip, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True).abs()
        harmonic, percussive = hpss(spectrum)
    return ClipSpectrograms(
        str(path),
        first / SAMPLE_RATE,
        length / SAMPLE_RATE,
        learned,
        [bank.sinc.kernel_size for bank in fronts[0].banks] if fronts else [],
        mel.numpy(),
        _log_power(spectrum),
        _log_power(harmonic),
        _log_power(percussive),
    )



def _log_power(magnitude: Tensor) -> np.ndarray:
    """Natural log of the power, floored as LogMel floors the mel power."""
    return torch.log(magnitude**2 + LOG_FLOOR).numpy()



def hpss(magnitude: Tensor, kernel: int = HPSS_KERNEL, power: float = 2.0) -> tuple[Tensor, Tensor]:
    """Harmonic and percussive parts of an STFT magnitude [freqs, frames] by median filtering (Fitzgerald, DAFx 2010).

    Partials are steady in time, so a median across time keeps them and removes onsets; onsets
    are broad in frequency, so a median across frequency keeps them and removes partials. The
    two filtered spectrograms become soft masks, H^p / (H^p + P^p) and P^p / (H^p + P^p) with
    p = 2 (Wiener-like, librosa's default); Fitzgerald's paper also gives binary ones.
    """
    harmonic = _median_filter(magnitude, kernel, dim=1)
    percussive = _median_filter(magnitude, kernel, dim=0)
    h, p = harmonic**power, percussive**power
    total = (h + p).clamp_min(1e-12)
    return magnitude * h / total, magnitude * p / total



def _median_filter(x: Tensor, size: int, dim: int) -> Tensor:
    """Running median of odd length `size` along `dim` of a 2D tensor, edges repeated."""
    moved = x.movedim(dim, -1)
    padded = F.pad(moved[None], (size // 2, size // 2), mode="replicate")[0]
    return padded.unfold(-1, size, 1).median(dim=-1).values.movedim(-1, dim)
