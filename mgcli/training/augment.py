"""Training clips: random clips of the training tracks, drawn and augmented reproducibly per epoch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..audio import CLIP_SAMPLES, SAMPLE_RATE, hz_to_mel
from ..clips import clip_at
from .cache import Track, load_wave, to_float


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's randomness: a resumed run draws what the uninterrupted one drew."""
    return seed * 1_000_003 + epoch


@dataclass
class Augment:
    """Training augmentation: the paper's gain and noise, plus what helps on small data.

    The noise's standard deviation is `noise_std` times the clip's own: every model
    layer-normalises its input, so this is noise of σ = noise_std on the normalised
    waveform (34 dB below the music at 0.02). A fixed σ on the raw samples would bury
    quiet passages and teach the models a noise floor that real recordings lack.

    With probability `mix_prob` a clip is mixed with a random clip of another track of its
    genre (its own track when it is the genre's only one), at the same loudness and a share
    λ ~ U(0, 0.5): new examples of a thin genre, label unchanged. `masks` time masks and
    `masks` frequency masks (SpecAugment-style, Park et al. 2019) are cut in the waveform,
    so they serve every front end alike: a time mask silences up to `MAX_TIME_MASK` of the
    clip; a frequency mask removes a band up to `MAX_FREQ_MASK` of the mel scale wide.
    Random time shifts need no option: every training clip starts at a random sample.
    """

    gain_low: float = 0.9
    gain_high: float = 1.1
    noise_std: float = 0.02
    mix_prob: float = 0.0
    masks: int = 0


MAX_TIME_MASK = 0.1  # of the clip's length
MAX_FREQ_MASK = 0.1  # of the mel range from 0 Hz to Nyquist


def mask_clip(clip: np.ndarray, masks: int, rng: np.random.Generator) -> np.ndarray:
    """`masks` random time spans zeroed and `masks` random mel bands removed (see `Augment`)."""
    clip = clip.copy()
    n = len(clip)
    spectrum = np.fft.rfft(clip)
    bin_mels = hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, len(spectrum)))
    for _ in range(masks):
        width = rng.uniform(0.0, MAX_FREQ_MASK) * bin_mels[-1]
        low = rng.uniform(0.0, bin_mels[-1] - width)
        spectrum[(bin_mels >= low) & (bin_mels <= low + width)] = 0.0
    clip = np.fft.irfft(spectrum, n).astype(np.float32)
    for _ in range(masks):
        width = int(rng.uniform(0.0, MAX_TIME_MASK) * n)
        start = int(rng.integers(0, n - width + 1))
        clip[start : start + width] = 0.0
    return clip


class TrainClips:
    """A map-style dataset of random training clips, `clips_per_track` per track per epoch.

    Which clips an epoch draws, and their augmentation, depend only on (seed, epoch, index),
    never on worker count or order: resuming at an epoch boundary repeats the run exactly.
    With `balanced`, tracks are drawn with probability inversely proportional to their
    class size instead of each track equally often.
    """

    def __init__(
        self,
        tracks: list[Track],
        names: list[str],
        clips_per_track: int = 4,
        clip_samples: int = CLIP_SAMPLES,
        augment: Augment | None = None,
        balanced: bool = False,
        seed: int = 0,
    ):
        if not tracks:
            raise ValueError("no training tracks")
        self.tracks = tracks
        self.targets = [names.index(t.label) for t in tracks]  # genres and set labels (`datasets.target_names`)
        self.clips_per_track = clips_per_track
        self.clip_samples = clip_samples
        self.augment = augment
        self.balanced = balanced
        self.seed = seed
        self.lengths = [len(load_wave(t)) for t in tracks]
        self.genre_tracks = {y: [i for i, t in enumerate(self.targets) if t == y] for y in set(self.targets)}
        self.plan: list[tuple[int, int]] = []
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        import torch

        self.epoch = epoch
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n = len(self.tracks) * self.clips_per_track
        if self.balanced:
            counts = Counter(self.targets)
            weights = torch.tensor([1.0 / counts[y] for y in self.targets])
            order = torch.multinomial(weights, n, replacement=True, generator=generator).tolist()
        else:
            order = torch.randperm(n, generator=generator).remainder(len(self.tracks)).tolist()
        fractions = torch.rand(n, generator=generator, dtype=torch.float64).tolist()
        self.plan = [
            (i, int(f * max(0, self.lengths[i] - self.clip_samples + 1))) for i, f in zip(order, fractions)
        ]

    def __len__(self) -> int:
        return len(self.plan)

    def _segment(self, track: int, start: int) -> np.ndarray:
        segment = to_float(load_wave(self.tracks[track])[start : start + self.clip_samples])
        return clip_at(segment, 0, self.clip_samples)

    def __getitem__(self, index: int):
        import torch

        track, start = self.plan[index]
        clip = self._segment(track, start)
        if self.augment:
            # numpy, not torch: small torch ops start OpenMP threads that fight the model's for
            # the cores, which made this 20x slower beside a training step on 2 cores.
            rng = np.random.default_rng((self.seed, self.epoch, index))
            a = self.augment
            if rng.random() < a.mix_prob:
                pool = [i for i in self.genre_tracks[self.targets[track]] if i != track] or [track]
                other = pool[int(rng.integers(len(pool)))]
                other_clip = self._segment(other, int(rng.integers(max(1, self.lengths[other] - self.clip_samples + 1))))
                share = rng.uniform(0.0, 0.5)
                loudness = clip.std() / max(float(other_clip.std()), 1e-8)
                clip = (1.0 - share) * clip + share * loudness * other_clip
            if a.masks:
                clip = mask_clip(clip, a.masks, rng)
            gain = rng.uniform(a.gain_low, a.gain_high)
            noise = rng.standard_normal(len(clip), dtype=np.float32) * (a.noise_std * clip.std())
            clip = ((clip + noise) * gain).astype(np.float32)
        return torch.from_numpy(clip), self.targets[track]
