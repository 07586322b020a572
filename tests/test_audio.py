"""Decoding, resampling and the clip cutter."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import write_tone

from mgcli import audio
from mgcli.audio import AudioError
from mgcli.clips import cut_clips, iter_clips, iter_spans


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3", ".au"])
def test_every_format_decodes_to_16k_mono_float32(tmp_path, suffix):
    path = write_tone(tmp_path / f"tone{suffix}", 440, 2.0, rate=44100, channels=2)
    wave = audio.load(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 32000) < 1200  # MP3 adds encoder delay and padding
    spectrum = np.abs(np.fft.rfft(wave[4000:20000]))
    assert np.argmax(spectrum) * audio.SAMPLE_RATE / 16000 == pytest.approx(440, abs=2)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_block_resampling_equals_whole_file_resampling(tmp_path, rate):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((rate * 5 + 77, 2))).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(str(path), x, rate, subtype="FLOAT")
    blocks = list(audio.stream(path, block_seconds=1.0))
    assert len(blocks) > 3
    whole = soxr.resample(x.mean(axis=1), rate, audio.SAMPLE_RATE, quality="HQ")
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)


def test_silence_clipping_and_non_finite_samples_are_safe(tmp_path):
    x = np.zeros(16000, np.float32)
    x[100:200] = 1.5  # clipped, beyond full scale
    x[300] = np.nan
    x[301] = np.inf
    sf.write(str(tmp_path / "odd.wav"), x, 16000, subtype="FLOAT")
    wave = audio.load(tmp_path / "odd.wav")
    assert np.isfinite(wave).all() and len(wave) == 16000
    sf.write(str(tmp_path / "silence.wav"), np.zeros(8000, np.float32), 16000)
    assert not audio.load(tmp_path / "silence.wav").any()


def test_clips_cover_the_track_and_pad_never_wrap():
    wave = np.arange(1, 120_001, dtype=np.float32)
    clips = cut_clips(wave, 48_000, 48_000)
    assert clips.shape == (3, 48_000)
    assert clips[2, 0] == 96_001 and clips[2, 23_999] == 120_000  # the tail ...
    assert not clips[2, 24_000:].any()  # ... padded with zeros, not wrapped to the start
    assert [c[0] for c in cut_clips(wave, 48_000, 8_000)][:3] == [1, 8_001, 16_001]


def test_a_short_track_is_one_padded_clip_and_a_sliver_of_tail_adds_no_clip():
    short = np.ones(1_000, np.float32)
    clips = cut_clips(short, 48_000, 48_000)
    assert clips.shape == (1, 48_000) and clips[0, :1000].all() and not clips[0, 1000:].any()
    # 30.01 s at 3-s clips: ten clips; the 0.01-s remainder would be a clip of zeros.
    assert len(cut_clips(np.ones(480_160, np.float32), 48_000, 48_000)) == 10


def test_streamed_clips_equal_clips_of_the_decoded_track(tmp_path):
    path = write_tone(tmp_path / "long.wav", 300, 7.3, rate=22050)
    for length, hop in [(48_000, 8_000), (16_000, 16_000), (8_000, 24_000)]:
        streamed = np.stack(list(iter_clips(audio.stream(path), length, hop)))
        whole = cut_clips(audio.load(path), length, hop)
        assert streamed.shape == whole.shape
        np.testing.assert_allclose(streamed, whole, atol=1e-6)


def _write_bad(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path):
    cases = {
        _write_bad(tmp_path, "empty.wav", b""): "empty file",
        _write_bad(tmp_path, "text.mp3", b"this is not audio\n" * 20): "not a readable audio file",
        _write_bad(tmp_path, "text.wav", b"this is not audio\n" * 20): "not a readable audio file (format not recognised)",
        tmp_path / "missing.ogg": "no such file",
        tmp_path: "is a folder",
    }
    good = write_tone(tmp_path / "cut.wav", 440, 1.0)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])  # the header is cut off mid-way
    cases[truncated] = "not a readable audio file"
    for path, message in cases.items():
        with pytest.raises(AudioError) as caught:
            audio.load(path)
        assert str(path) in str(caught.value) and message in str(caught.value)
        assert "\n" not in str(caught.value)


def test_a_file_of_zero_frames_has_no_audio(tmp_path):
    sf.write(str(tmp_path / "nothing.wav"), np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="contains no audio"):
        audio.load(tmp_path / "nothing.wav")


@pytest.mark.parametrize("length, hop", [(4_000, 1_000), (4_000, 4_000), (1_000, 3_000), (5_000, 700)])
def test_spans_hold_the_same_clips_as_the_clip_cutter(length, hop):
    wave = np.random.default_rng(0).standard_normal(23_456).astype(np.float32)
    blocks = np.split(wave, [5_000, 5_001, 17_000])  # block edges anywhere, one of a single sample
    expected = cut_clips(wave, length, hop)
    for max_clips in (1, 3, 7, 100):
        clips = []
        for span, n in iter_spans(blocks, length, hop, max_clips):
            assert 1 <= n <= max_clips and len(span) == length + (n - 1) * hop
            clips += [span[i * hop : i * hop + length] for i in range(n)]
        np.testing.assert_array_equal(np.stack(clips), expected)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_the_downmix_is_the_mean_of_the_channels_to_the_bit(tmp_path, channels):
    x = np.random.default_rng(channels).standard_normal((20_000, channels)).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(str(path), x, audio.SAMPLE_RATE, subtype="FLOAT")
    assert np.array_equal(audio.load(path), x.mean(axis=1, dtype=np.float32))


def _music(rate: int, seconds: float, channels: int = 2) -> np.ndarray:
    """A tone that changes every 0.4 s, noise and clicks: audio whose every clip differs."""
    rng = np.random.default_rng(rate)
    t = np.arange(int(rate * seconds)) / rate
    pitch = 220 * 2 ** (np.floor(t / 0.4) % 12 / 12)
    mono = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / rate) + 0.03 * rng.standard_normal(len(t))
    mono[:: rate // 3] = 0.9
    return np.stack([np.roll(mono, 7 * c) for c in range(channels)], axis=1).astype(np.float32)


@pytest.mark.parametrize(("suffix", "rate"), [
    (".mp3", 44100), (".mp3", 22050), (".mp3", 48000), (".mp3", 16000), (".ogg", 44100), (".flac", 8000), (".wav", 16000), (".wav", 11025),
])
def test_clips_read_by_seeking_are_the_clips_of_the_streamed_file(tmp_path, suffix, rate):
    """read_clips seeks to each clip and restarts the resampler a margin before it: what streaming the
    whole file gives there, within float32 rounding; the last clip runs past the end, zero-padded."""
    path = tmp_path / f"music{suffix}"
    sf.write(str(path), _music(rate, 20.0), rate)
    whole = audio.load(path)
    starts = [0, 5, 16_001, 100_000, len(whole) - 50_000, len(whole) - 20_000]
    notes = audio.DecodeNotes()
    clips, n_samples = audio.read_clips(path, 48_000, lambda n: starts, notes)
    assert n_samples == len(whole)
    for start, clip in zip(starts, clips):
        np.testing.assert_allclose(clip, np.pad(whole[start : start + 48_000], (0, max(0, start + 48_000 - len(whole)))), atol=1e-5)
    assert notes.seconds == len(whole) / audio.SAMPLE_RATE and notes.warning(path, 3.0) == ""


def test_a_truncated_file_is_sought_only_where_its_header_says_what_it_holds(tmp_path):
    """A truncated MP3's header promises more than it holds: its true length is known only from
    decoding it whole, and read_clips declines. libsndfile counts a truncated WAV's frames from
    its data: it is sought, and warned about as when it is decoded whole."""
    for suffix in (".mp3", ".wav"):
        path = tmp_path / f"music{suffix}"
        sf.write(str(path), _music(44100, 20.0), 44100)
        truncated = tmp_path / f"truncated{suffix}"
        truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        notes, streamed = audio.DecodeNotes(), audio.DecodeNotes()
        list(audio.stream(truncated, notes=streamed))
        sought = audio.read_clips(truncated, 48_000, lambda n: [0], notes)
        if suffix == ".mp3":
            assert sought is None and notes == audio.DecodeNotes()  # nothing heard
        else:
            assert sought[1] == round(streamed.seconds * audio.SAMPLE_RATE)
            assert "truncated: its header promises 20.0 s, the file holds 10.0 s" in notes.warning(truncated, 3.0)
            assert notes.warning(truncated, 3.0) == streamed.warning(truncated, 3.0)
        assert audio.read_clips(path, 48_000, lambda n: None, notes) is None  # nothing to seek: read it whole


def test_silence_of_sought_clips_is_theirs(tmp_path):
    x = np.zeros((44100 * 20, 2), np.float32)
    x[:44100] = _music(44100, 1.0)  # sound in the first second only
    path = tmp_path / "quiet.wav"
    sf.write(str(path), x, 44100)
    notes = audio.DecodeNotes()
    audio.read_clips(path, 48_000, lambda n: [96_000, 192_000], notes)
    assert notes.warning(path, 3.0).endswith("silent: the genre is a guess")
    notes = audio.DecodeNotes()
    audio.read_clips(path, 48_000, lambda n: [0, 64_000, 128_000, 192_000], notes)  # 12 s, 1 of them sound
    assert "91% silence: the genre rests on 1.1 s of sound" in notes.warning(path, 3.0)  # 1 s, and the resampler's ringing
