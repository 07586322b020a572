"""What a model learned and how it sees a clip: the numbers behind `mgc inspect`.

- `sinc_filters`: every sinc bank's learned cut-offs beside its mel-scale start, its taps and
  their frequency responses (SincNet's filters are two numbers each, so they can be read).
- `filter_banks`: the strongest of a network's learned (time x band) front-end filters (musicnn's
  timbral and temporal branches), as the network scales them;
- `clip_spectrograms`: one clip's learned multi-scale sinc representation beside its mel,
  linear, harmonic and percussive spectrograms (MS-SincResNet's figure 4), the last two by
  median-filtering HPSS (`hpss`, Fitzgerald 2010).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import MgcError, quiet
from ..audio import SAMPLE_RATE, load
from ..clips import clip_at
from ..files import check_output_folder
from ..inference import load_model
from ..models.mel import LOG_FLOOR, LogMel
from ..models.sinc import SincConv
from ..torch_engine import GenreModel
from .plot import draw_filter_banks, draw_sinc_cutoffs, draw_sinc_responses, draw_spectrograms, require_matplotlib
from .results import ClipSpectrograms, FilterBank, SincFilters

# The hand-made spectrograms of `clip_spectrograms`: the paper's mel settings (window 512, hop 128 at 16 kHz).
N_FFT = 512
HOP_LENGTH = 128

N_MELS = 128
HPSS_KERNEL = 17
STRONGEST = 8  # filters drawn per front-end bank  # median filter length, in frames and in bins (Fitzgerald's choice)


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


def filter_banks(network: nn.Module, k: int = STRONGEST) -> list[FilterBank]:
    """The `k` strongest filters (largest norm, gain included) of each bank of the network's `learned_filters`."""
    banks = []
    for name, weights in network.learned_filters().items():
        weights = weights.float().cpu()
        strongest = weights.flatten(1).norm(dim=1).argsort(descending=True)[:k]
        banks.append(FilterBank(name, strongest.numpy(), weights[strongest].numpy(), len(weights)))
    return banks


def clip_spectrograms(model: GenreModel, path: str | Path, start: float | None = None) -> ClipSpectrograms:
    """The clip of `path` from `start` seconds (default: the middle of the track), as MS-SincResNet's figure 4 shows it.

    The learned representation is the network's `learned_spectrogram` of the clip (the multi-scale
    sinc banks of ms-sincresnet, sincresnet and multi-input); other models have none.
    """
    wave = load(path)
    length = model.clip_samples
    first = max(0, (len(wave) - length) // 2) if start is None else round(start * SAMPLE_RATE)
    if not 0 <= first < len(wave):
        raise MgcError(f"--start {start} s is outside {path} ({len(wave) / SAMPLE_RATE:.1f} s long)")
    clip = torch.from_numpy(clip_at(wave, first, length))
    with torch.no_grad():
        learned = model.network.learned_spectrogram(clip[None].to(model.device))
        mel = LogMel(SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS)(clip)
        spectrum = torch.stft(clip, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True).abs()
        harmonic, percussive = hpss(spectrum)
    return ClipSpectrograms(
        str(path),
        first / SAMPLE_RATE,
        length / SAMPLE_RATE,
        None if learned is None else learned[0].float().cpu().numpy(),
        model.network.learned_taps,
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


def inspect(
    weights: str | Path, out_dir: str | Path, audio: str | Path | None = None, start: float | None = None,
    notify: Callable[[str], None] = quiet,
) -> list[Path]:
    """`mgc inspect`: draw a checkpoint's learned filters (sinc banks, or musicnn's front end) into
    `out_dir` and, with `audio`, how it sees a clip of it from `start` seconds (needs mgcli[plot]).
    Returns the files written."""
    if start is not None and audio is None:
        raise MgcError("--start places the --audio clip: give --audio FILE too")
    if start is not None and not 0 <= start < math.inf:
        raise MgcError(f"--start must be a number of seconds, at least 0, not {start}")
    require_matplotlib()
    check_output_folder(out_dir)
    model = load_model(weights, "cpu", engine="torch")
    banks = sinc_filters(model.network)
    front_end = filter_banks(model.network)
    if not banks and not front_end and audio is None:
        raise MgcError(
            f"{weights}: {model.name} has no sinc filters to draw, nor learned (time x band) front-end filters; "
            "pass --audio FILE for its spectrograms"
        )
    clip = clip_spectrograms(model, audio, start) if audio else None  # refused (a --start past the end) before any file is drawn
    out_dir = Path(out_dir)
    written = []
    if banks:
        written += [out_dir / "sinc-cutoffs.png", out_dir / "sinc-responses.png"]
        draw_sinc_cutoffs(written[0], banks)
        draw_sinc_responses(written[1], banks)
    if front_end:
        written.append(out_dir / "front-end-filters.png")
        draw_filter_banks(written[-1], front_end)
    if clip:
        if clip.learned is None:
            notify(f"{model.name} has no multi-scale sinc front end: spectrograms.png shows the hand-made spectrograms only")
        written.append(out_dir / "spectrograms.png")
        draw_spectrograms(written[-1], clip)
    return written
