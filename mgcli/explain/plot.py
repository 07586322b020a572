"""Every picture mgcli draws: `mgc explain`, `mgc inspect` and `mgc predict --timeline-png`.

matplotlib is an optional extra (pip install "mgcli[plot]"), imported on first use. Figures are
built with its object API (`Figure`, rendered to PNG by the Agg backend), not pyplot, so no GUI
backend or global figure state is involved. Without matplotlib, drawing raises an MgcError that
says how to install it. The numbers come from `explain`, `inspect` and `mgcli.inference.timeline`.

Every picture has a fixed size, in pixels (width, height) at DPI dots per inch, whatever it shows.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import MgcError
from ..audio import SAMPLE_RATE, hz_to_mel, mel_to_hz
from ..files import write_atomic
from . import CUTOFFS_PIXELS, EXPLAIN_PIXELS, FILTERS_PIXELS, RESPONSES_PIXELS, SPECTROGRAMS_PIXELS, TIMELINE_PIXELS
from .results import ClipSpectrograms, Explanation, FilterBank, InputExplanation, SincFilters

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100


def require_matplotlib() -> type[Figure]:
    """matplotlib's Figure class, or an MgcError saying how to install it.

    Commands call it before any long computation, so a missing extra is reported at once.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MgcError('pictures need matplotlib, an optional extra: pip install "mgcli[plot]"') from None
    return Figure


def draw_explanation(path: str | Path, explanation: Explanation) -> None:
    """Per input: what the model reads over the whole track, its Grad-CAM and integrated gradients; clip
    probabilities beneath. A spectrogram's maps are images, with each band's share of the evidence at
    their right; a waveform's are curves over time."""
    figure = _figure(EXPLAIN_PIXELS)
    n_rows = 3 * len(explanation.inputs)
    grid = figure.add_gridspec(n_rows + 1, 2, width_ratios=[12, 1], height_ratios=[3] * n_rows + [2])
    time_ax = figure.add_subplot(grid[-1, 0])
    axes = [figure.add_subplot(grid[row, 0], sharex=time_ax) for row in range(n_rows)]
    label = explanation.label
    duration = len(explanation.timeline) * explanation.clip_seconds
    for i, item in enumerate(explanation.inputs):
        image_ax, cam_ax, gradients_ax = axes[3 * i : 3 * i + 3]
        image_ax.set_title(f"{item.name}: what the model reads", loc="left")
        cam_ax.set_title(f"Grad-CAM for {label}: where its evidence lies", loc="left")
        gradients_ax.set_title(f"integrated gradients for {label}: red speaks for it, blue against", loc="left")
        if item.grad_cam is None:
            cam_ax.text(0.5, 0.5, f"no Grad-CAM: no convolution reads the {item.name}", transform=cam_ax.transAxes,
                        ha="center", va="center")
            cam_ax.set_yticks([])
        if item.waveform:
            _draw_waveform_maps(image_ax, cam_ax, gradients_ax, item, duration)
        else:
            rows = (1, 2) if item.grad_cam is not None else (2,)
            sides = [figure.add_subplot(grid[3 * i + row, 1], sharey=axes[3 * i + row]) for row in rows]
            _draw_spectrogram_maps(figure, image_ax, cam_ax, gradients_ax, sides, item, duration)
        for ax in (image_ax, cam_ax, gradients_ax):
            ax.tick_params(labelbottom=False)
    mesh = _draw_clips(time_ax, explanation.timeline, explanation.labels, highlight=label)
    figure.colorbar(mesh, ax=time_ax, pad=0.005, label="probability")
    time_ax.set_title("each clip's genre probabilities", loc="left")
    time_ax.set_xlabel("time (s)")
    time_ax.set_xlim(0, duration)
    figure.suptitle(f"{Path(explanation.path).name}: why {label} ({explanation.probability:.0%})?")
    _save(figure, path)


def _draw_spectrogram_maps(
    figure: Figure, image_ax: Axes, cam_ax: Axes, gradients_ax: Axes, sides: list[Axes], item: InputExplanation,
    duration: float,
) -> None:
    """The input, its Grad-CAM over it and its integrated gradients as images, bands up; at their right
    (`sides`: one axis per map) each band's mean Grad-CAM and its attribution summed over the track:
    which bands carried the genre."""
    extent = (0, duration, 0, item.image.shape[0])
    bands = np.arange(item.image.shape[0]) + 0.5
    figure.colorbar(_image(image_ax, item.image, extent), ax=image_ax, pad=0.005, label="input value")
    if item.grad_cam is not None:
        cam_side = sides[0]
        cam_ax.set_ylabel("band")
        _image(cam_ax, item.image, extent, cmap="gray")
        heat = cam_ax.imshow(
            item.grad_cam, origin="lower", aspect="auto", extent=extent, cmap="turbo", vmin=0, vmax=1,
            alpha=0.8 * np.clip(item.grad_cam, 0, 1),  # no evidence: the input shows through
        )
        figure.colorbar(heat, ax=cam_ax, pad=0.005, label="Grad-CAM")
        cam_side.fill_betweenx(bands, 0, item.grad_cam.mean(axis=1), color="tab:orange")
        cam_side.set_xlim(0, None)
    sides[0].set_title("per band", fontsize=8)
    attribution = item.integrated_gradients
    limit = _colour_range(np.abs(attribution))[1] or 1.0
    signed = gradients_ax.imshow(
        attribution, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit
    )
    figure.colorbar(signed, ax=gradients_ax, pad=0.005, label="attribution")
    per_band = attribution.sum(axis=1)
    gradients_side = sides[-1]
    gradients_side.barh(bands, per_band, height=1.0, color=np.where(per_band > 0, "tab:red", "tab:blue"))
    gradients_side.axvline(0, color="black", linewidth=0.5)
    for ax in sides:
        ax.tick_params(labelleft=False, labelsize=7)
        ax.locator_params(axis="x", nbins=3)  # a narrow panel: a few ticks, or their labels run together
    for ax in (image_ax, gradients_ax):
        ax.set_ylabel("band")


def _draw_waveform_maps(
    image_ax: Axes, cam_ax: Axes, gradients_ax: Axes, item: InputExplanation, duration: float
) -> None:
    """The waveform's envelope, its Grad-CAM and its integrated gradients per frame, as curves over time."""
    frames = item.image.shape[1]
    times = (np.arange(frames) + 0.5) * duration / frames
    envelope = item.image[0]
    image_ax.fill_between(times, -envelope, envelope, color="tab:gray", linewidth=0)
    image_ax.set_ylabel("amplitude")
    if item.grad_cam is not None:
        cam_ax.fill_between(times, 0, item.grad_cam[0], color="tab:orange", linewidth=0)
    cam_ax.set_ylim(0, 1.05)
    cam_ax.set_ylabel("Grad-CAM")
    attribution = item.integrated_gradients[0]
    gradients_ax.fill_between(times, 0, attribution, where=attribution > 0, color="tab:red", linewidth=0)
    gradients_ax.fill_between(times, 0, attribution, where=attribution < 0, color="tab:blue", linewidth=0)
    gradients_ax.axhline(0, color="black", linewidth=0.5)
    gradients_ax.set_ylabel("attribution")


def draw_timeline(path: str | Path, timeline: list[dict], labels: list[str], title: str) -> None:
    """A track's clips (inference.timeline) as a strip: the top genre per clip above, every genre's probability below."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    figure = _figure(TIMELINE_PIXELS)
    band_ax, probabilities_ax = figure.subplots(2, 1, sharex=True, height_ratios=[1, 5])
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    colors = palette(np.arange(len(labels)) % palette.N)
    best = np.array([[labels.index(s["genre"]) for s in timeline]])
    band_ax.pcolormesh(
        _clip_edges(timeline), [0, 1], best, cmap=ListedColormap(colors), vmin=-0.5, vmax=len(labels) - 0.5
    )
    band_ax.set_yticks([])
    band_ax.set_title(f"{title}: top genre per clip", loc="left")
    shown = sorted(set(best[0]))
    figure.legend(
        handles=[Patch(color=colors[i], label=labels[i]) for i in shown], loc="outside upper right", ncols=len(shown)
    )
    mesh = _draw_clips(probabilities_ax, timeline, labels)
    figure.colorbar(mesh, ax=[band_ax, probabilities_ax], pad=0.005, label="probability")
    probabilities_ax.set_xlabel("time (s)")
    probabilities_ax.set_xlim(0, timeline[-1]["end"])
    _save(figure, path)


def draw_sinc_cutoffs(path: str | Path, banks: list[SincFilters]) -> None:
    """Each bank's filters as vertical bars from learned low to high cut-off, over the dashed mel-scale start."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(CUTOFFS_PIXELS)
    axes = figure.subplots(1, len(banks), sharey=True, squeeze=False)[0]
    for ax, bank in zip(axes, banks):
        index = np.arange(len(bank.low_hz))
        ax.vlines(index, bank.low_hz, bank.high_hz, color="tab:orange", linewidth=1.5, label="learned pass band")
        ax.plot(index, bank.init_low_hz, "k--", linewidth=0.8, label="mel-scale start")
        ax.plot(index, bank.init_high_hz, "k--", linewidth=0.8)
        # On a mel axis the mel-spaced start is a straight line, so every departure from it shows.
        ax.set_yscale("function", functions=(hz_to_mel, mel_to_hz))
        ax.set_ylim(0, bank.sample_rate / 2)
        ax.set_title(f"{bank.name} ({bank.taps.shape[1]} taps)", loc="left", fontsize=9)
        ax.set_xlabel("filter")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("frequency (Hz, mel-scaled axis)")
    axes[0].legend(loc="upper left")
    figure.suptitle("learned sinc cut-offs against their mel-scale start")
    _save(figure, path)


def draw_sinc_responses(path: str | Path, banks: list[SincFilters], n_shown: int = 4) -> None:
    """Impulse and frequency responses of `n_shown` filters spread over each bank, one row per bank."""
    figure = _figure(RESPONSES_PIXELS)
    axes = figure.subplots(len(banks), 2, squeeze=False)
    for (time_ax, frequency_ax), bank in zip(axes, banks):
        n_filters, n_taps = bank.taps.shape
        shown = np.unique(np.linspace(0, n_filters - 1, n_shown).round().astype(int))
        milliseconds = (np.arange(n_taps) - (n_taps - 1) / 2) / bank.sample_rate * 1000
        for k in shown:
            (line,) = time_ax.plot(milliseconds, bank.taps[k], linewidth=0.8)
            frequency_ax.plot(
                bank.response_hz, bank.response_db[k], linewidth=0.8, color=line.get_color(),
                label=f"filter {k}: {bank.low_hz[k]:.0f}-{bank.high_hz[k]:.0f} Hz",
            )
        time_ax.set_title(f"{bank.name}: impulse responses", loc="left", fontsize=9)
        time_ax.set_ylabel("amplitude")
        frequency_ax.set_title("frequency responses", loc="left", fontsize=9)
        frequency_ax.set_ylabel("gain (dB)")
        frequency_ax.set_xlim(0, bank.sample_rate / 2)
        frequency_ax.set_ylim(-80, 6)
        frequency_ax.legend(fontsize=7, loc="lower right")
    axes[-1][0].set_xlabel("time (ms)")
    axes[-1][1].set_xlabel("frequency (Hz)")
    figure.suptitle("learned sinc filters")
    _save(figure, path)


def draw_filter_banks(path: str | Path, banks: list[FilterBank]) -> None:
    """The strongest learned front-end filters: a bank spanning several bands as a row of (band x time)
    images; the banks one band wide (over time only) as curves, one panel each, in the last row."""
    figure = _figure(FILTERS_PIXELS)
    images = [bank for bank in banks if bank.weights.shape[2] > 1]
    curves = [bank for bank in banks if bank.weights.shape[2] == 1]
    rows = figure.subfigures(len(images) + bool(curves), 1, squeeze=False)[:, 0]
    for row, bank in zip(rows, images):
        axes = row.subplots(1, len(bank.index), squeeze=False)[0]
        limit = np.abs(bank.weights).max() or 1.0
        for ax, index, weights in zip(axes, bank.index, bank.weights):
            frames, bands = weights.shape
            mesh = ax.imshow(weights.T, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                             extent=(0, frames, 0, bands))
            ax.set_title(f"#{index}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("frame", fontsize=7)
        axes[0].set_ylabel("band above the lowest", fontsize=7)
        row.colorbar(mesh, ax=list(axes), pad=0.005, label="weight")
        row.suptitle(f"{bank.name} (frames x bands): {len(bank.index)} of {bank.n_filters}", x=0.01, ha="left",
                     fontsize=10)
    if curves:
        axes = rows[-1].subplots(1, len(curves), squeeze=False)[0]
        for ax, bank in zip(axes, curves):
            for index, weights in zip(bank.index, bank.weights[:, :, 0]):
                ax.plot(np.arange(len(weights)), weights, linewidth=0.8, label=f"#{index}")
            ax.set_title(f"{bank.name} (frames x bands): {len(bank.index)} of {bank.n_filters}", loc="left",
                         fontsize=9)
            ax.set_xlabel("frame")
            ax.legend(fontsize=6, ncols=2)
        axes[0].set_ylabel("weight")
    figure.suptitle("learned front-end filters, strongest first (weights times each filter's gain)")
    _save(figure, path)


def draw_spectrograms(path: str | Path, clip: ClipSpectrograms) -> None:
    """MS-SincResNet's figure 4: the learned representation (top row, one panel per bank, and RGB when there are
    three banks) beside the clip's mel, linear, harmonic and percussive spectrograms (bottom row)."""
    figure = _figure(SPECTROGRAMS_PIXELS)
    learned = [] if clip.learned is None else list(clip.learned)
    columns = max(4, len(learned) + (len(learned) == 3))
    axes = figure.subplots(2 if learned else 1, columns, squeeze=False)
    times = (clip.start, clip.start + clip.clip_seconds)
    for ax, (taps, image) in zip(axes[0], zip(clip.learned_taps, learned)):
        _image(ax, image, (*times, 0, image.shape[0]))
        ax.set_title(f"learned: {taps}-tap sinc bank", loc="left", fontsize=9)
        ax.set_ylabel("filter (low to high)")
    if len(learned) == 3:
        rgb = np.stack([_unit(image) for image in learned], axis=-1)
        axes[0][3].imshow(rgb, origin="lower", aspect="auto", extent=(*times, 0, rgb.shape[0]))
        axes[0][3].set_title("learned, as RGB (MS-SincResNet's 3 channels)", loc="left", fontsize=9)
    in_hz = (0, SAMPLE_RATE / 2)  # STFT bins span 0 Hz .. the Nyquist frequency
    stft_range = _colour_range(clip.linear)  # one scale for the STFT and its two parts, so they compare
    hand_made = [
        ("log-mel", clip.mel, "mel band", (0, clip.mel.shape[0]), _colour_range(clip.mel)),
        ("linear", clip.linear, "Hz", in_hz, stft_range),
        ("harmonic (HPSS)", clip.harmonic, "Hz", in_hz, stft_range),
        ("percussive (HPSS)", clip.percussive, "Hz", in_hz, stft_range),
    ]
    for ax, (name, image, axis_name, rows, colour_range) in zip(axes[-1], hand_made):
        _image(ax, image, (*times, *rows), colour_range=colour_range)
        ax.set_title(name, loc="left", fontsize=9)
        ax.set_ylabel(axis_name)
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_axis_off()
        else:
            ax.set_xlabel("time (s)")
    figure.suptitle(f"{Path(clip.path).name}, {times[0]:.2f}-{times[1]:.2f} s: learned and hand-made spectrograms")
    _save(figure, path)


def _figure(pixels: tuple[int, int]) -> Figure:
    return require_matplotlib()(figsize=(pixels[0] / DPI, pixels[1] / DPI), dpi=DPI, layout="constrained")


def _save(figure: Figure, path: str | Path) -> None:
    with warnings.catch_warnings():
        # Labels in a script the font lacks (CJK) are drawn as boxes; a warning per glyph would only be noise.
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=DPI, format="png"))


def _image(ax: Axes, values: np.ndarray, extent: tuple, cmap: str = "magma", colour_range: tuple | None = None):
    """A 2D array, low rows at the bottom, coloured over `colour_range` (default: its own _colour_range)."""
    low, high = colour_range or _colour_range(values)
    return ax.imshow(values, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=low, vmax=high)


def _colour_range(values: np.ndarray) -> tuple[float, float]:
    """The 1st and 99.5th percentiles: a few extreme values must not wash out the rest."""
    low, high = np.percentile(values, [1, 99.5])
    return float(low), float(high)


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = _colour_range(values)
    return np.clip((values - low) / max(high - low, 1e-12), 0, 1)


def _clip_edges(timeline: list[dict]) -> np.ndarray:
    """Cell edges on the time axis: each clip gets a cell one hop wide, centred on the centre of its window."""
    starts = np.array([s["start"] for s in timeline])
    centres = (starts + np.array([s["end"] for s in timeline])) / 2
    width = starts[1] - starts[0] if len(timeline) > 1 else timeline[0]["end"] - timeline[0]["start"]
    return np.append(centres - width / 2, centres[-1] + width / 2)


def _draw_clips(ax: Axes, timeline: list[dict], labels: list[str], highlight: str | None = None):
    """Every clip's genre probabilities as a genres x time heatmap; `highlight` names a genre to set in bold."""
    probabilities = np.array([[s["probabilities"][label] for label in labels] for s in timeline])
    mesh = ax.pcolormesh(
        _clip_edges(timeline), np.arange(len(labels) + 1) - 0.5, probabilities.T, cmap="viridis", vmin=0, vmax=1
    )
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()  # the first label on top, as in a table
    if highlight is not None:
        ax.get_yticklabels()[labels.index(highlight)].set_fontweight("bold")
    return mesh
