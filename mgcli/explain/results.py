"""The numbers `explain` and `inspect` compute and `plot` draws: plain data, below both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class InputExplanation:
    """Maps over one input for a whole track, [rows, n_clips * frames]: back-to-back clips side by side in time.

    A spectrogram's rows are its bands (low to high); a waveform has one row of short frames.
    """

    name: str
    waveform: bool  # one row of frames, not a spectrogram
    image: np.ndarray  # the input, mean over its channels; a waveform: each frame's peak |amplitude|
    grad_cam: np.ndarray | None  # in [0, 1], 1 the strongest evidence in the track; None: no convolution reads the input
    integrated_gradients: np.ndarray  # summed over channels (a waveform: over each frame): > 0 speaks for the genre


@dataclass
class Explanation:
    path: str
    label: str  # the genre explained
    probability: float  # the track's calibrated probability of `label`, as predict gives it
    labels: list[str]
    clip_seconds: float
    timeline: list[dict]  # inference.timeline of the back-to-back clips: each clip's genre probabilities
    inputs: list[InputExplanation]


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


@dataclass
class FilterBank:
    """The strongest filters of one learned front-end bank over (time x band), strongest first."""

    name: str  # e.g. "timbral 7 x 38": frames x bands
    index: np.ndarray  # [k]: each filter's place in its bank
    weights: np.ndarray  # [k, frames, bands], scaled by the gain the network gives each filter
    n_filters: int  # filters in the whole bank


@dataclass
class ClipSpectrograms:
    """One clip seen by the network's sinc front end and by four hand-made spectrograms (log power)."""

    path: str
    start: float  # seconds
    clip_seconds: float
    learned: np.ndarray | None  # [n_banks, K, W]: the multi-scale sinc representation; None without one
    learned_taps: list[int]  # filter length of each bank of `learned`
    mel: np.ndarray  # [n_mels, frames]
    linear: np.ndarray  # [n_fft // 2 + 1, frames]
    harmonic: np.ndarray  # [n_fft // 2 + 1, frames]
    percussive: np.ndarray  # [n_fft // 2 + 1, frames]
