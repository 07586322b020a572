"""The ONNX engine: an exported model run by onnxruntime on the CPU, without importing torch.

An ONNX file is the compiled form of a checkpoint, as a wheel is of a source tree: `mgc export
CKPT --format onnx` writes it from the PyTorch module, which stays the one definition of the
model. What the engine needs beyond the graph travels in the file's metadata
(export.export_metadata): the labels, the clip length, whether it is a tagger, the calibration
and novelty scale, and the SHA-256
of the checkpoint it was exported from, so that an ONNX twin is never run in place of a
checkpoint that has changed since.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import MgcError, first_line
from .audio import SAMPLE_RATE
from .clips import ClipOutputs, span_clips
from .cores import cpu_sample, decoding_threads, engine_threads
from .novelty import NoveltyScale

INPUT_NAME = "waveform"  # the exported graph's input and output names
OUTPUT_NAME = "logits"
TAGS_OUTPUT_NAME = "tag_logits"  # a second output, of networks that keep a tagger


@dataclass
class OnnxModel:
    """An exported model in an onnxruntime session, with what its metadata says of it."""

    name: str
    labels: list[str]
    clip_samples: int
    is_tagger: bool
    temperatures: dict[str, float]  # per aggregation (calibration.py); none: 1
    novelty: NoveltyScale | None  # (novelty.py) None: no novelty score
    checkpoint_sha256: str  # of the checkpoint it was exported from; "" when the file does not say
    session: Any  # onnxruntime.InferenceSession
    outputs: list[str]  # OUTPUT_NAME, and TAGS_OUTPUT_NAME where the graph has it

    engine = "onnx"
    reads_spans = False  # the graph is the clip-by-clip forward: overlapping clips are cut, then batched
    # Clips per session run, as on the PyTorch engine's CPU: musicnn costs about the same per clip
    # in runs of 2 to 16 clips (one clip alone about a third more), 4 clips let the model start on
    # a track's first 12 s while the decoding thread reads on, and 8 were no faster in paired
    # whole-process runs (docs/performance.md).
    batch_size = 4
    decoders = decoding_threads("cpu")  # threads decoding files ahead of it (inference.classify_files)

    def clip_outputs(self, clips: np.ndarray) -> ClipOutputs:
        """The outputs of a batch of clips [n_clips, clip_samples]."""
        return ClipOutputs(*self.session.run(self.outputs, {INPUT_NAME: np.ascontiguousarray(clips, dtype=np.float32)}))

    def span_outputs(self, span: np.ndarray, hop: int, n_clips: int) -> ClipOutputs:
        """The outputs of the clips span[i * hop : i * hop + clip_samples] (clips.iter_spans)."""
        return self.clip_outputs(span_clips(span, self.clip_samples, hop, n_clips))


def load_onnx_model(path: str | Path) -> OnnxModel:
    """Open an ONNX file written by `mgc export` in an onnxruntime session on the CPU.

    Its threads are the cores that other processes left idle while it loaded (importing
    onnxruntime is part of that window; see cores.idle_cores), or OMP_NUM_THREADS (which
    onnxruntime does not read itself) up to the machine's cores.
    """
    before = cpu_sample()
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise MgcError(f"{path}: no such ONNX file")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = engine_threads(before)
    options.inter_op_num_threads = 1
    # A fine-tuned musicnn ran 35x slower on denormal floats: flush them, as the PyTorch engine does.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.log_severity_level = 3  # errors only: its warnings are about the graph, not the user's input
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for a file that is no model
        raise MgcError(f"{path}: not a readable ONNX model ({first_line(error)})") from None
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        labels = json.loads(metadata["labels"])
        clip_samples = int(metadata["clip_samples"])
        sample_rate = int(metadata["sample_rate"])
        name = metadata["model"]
        temperatures = {key: float(t) for key, t in json.loads(metadata.get("temperatures", "{}")).items()}
        novelty = json.loads(metadata["novelty"]) if "novelty" in metadata else None
    except (KeyError, ValueError, AttributeError):
        raise MgcError(f"{path}: an ONNX file without mgcli's metadata (export it with `mgc export`)") from None
    if sample_rate != SAMPLE_RATE:
        raise MgcError(f"{path}: made for {sample_rate} Hz audio, mgcli uses {SAMPLE_RATE}")
    tagger, checkpoint_sha256 = metadata.get("tagger") == "true", metadata.get("checkpoint_sha256", "")
    scale = None if novelty is None else NoveltyScale.from_dict(novelty, str(path))
    outputs = [OUTPUT_NAME] + [o.name for o in session.get_outputs() if o.name == TAGS_OUTPUT_NAME]
    return OnnxModel(name, labels, clip_samples, tagger, temperatures, scale, checkpoint_sha256, session, outputs)


def load_twin(checkpoint: Path) -> tuple[OnnxModel | None, str]:
    """The ONNX twin of `checkpoint` (the same name with .onnx), when it is there, readable and
    exported from the checkpoint as it is now; else None and, in one line, why not (a damaged
    twin too: the checkpoint still runs on PyTorch)."""
    twin = checkpoint.with_suffix(".onnx")
    export = f"`mgc export {checkpoint} --format onnx --out {twin}`"
    if not checkpoint.is_file():
        return None, f"{checkpoint}: no such checkpoint"
    if not twin.is_file():
        return None, f"{checkpoint} has no ONNX file ({twin.name}); make one with {export}"
    try:
        model = load_onnx_model(twin)
    except MgcError as error:
        return None, f"{error}; export it again with {export}"
    if model.checkpoint_sha256 != file_sha256(checkpoint):
        return None, f"{twin} was not exported from {checkpoint} as it is now; export it again with {export}"
    return model, ""


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
