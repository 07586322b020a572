"""Novelty: how far a track is from all ten genres, read from the pretrained tagger's tags.

A genre classifier gives every track one of its genres; a folk or techno track gets a
confident wrong one. The default keeps the Million Song Dataset tagger it was fine-tuned
from beside it (Musicnn's `keep_tagger`: the tagger's own mid and back end on the one shared
front end, 3% more compute), and the tagger names styles outside the ten genres. A track's
evidence is the sum over OUT_OF_GENRE_TAGS of the tags' probabilities (each clip's sigmoid,
averaged over the clips, as `mgc tags` gives them).

The evidence is put on a scale fit on in-genre tracks the genre model has not trained on
(`mgc calibrate`): novelty 0 at or below the typical (median) in-genre track, 0.5 at the
evidence that 95% of them stay under (NOVELTY_THRESHOLD, the default threshold), rising
linearly to 1 at twice that distance. It is measured, with the scores it was chosen over, by
`benchmarks/novelty.py` (docs/models.md, "Novelty"). Torch-free: both engines use it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import MgcError

# The MSD tags that name styles outside GTZAN's ten genres. Chosen by what they mean, not by the
# measurements: ../shared/data/outside holds electronic music only, so tags scored on it alone
# would leave folk or R&B out.
OUT_OF_GENRE_TAGS = ("electronic", "electronica", "electro", "House", "ambient", "experimental", "folk", "rnb", "soul", "funk")
NOVELTY_THRESHOLD = 0.5  # the novelty that IN_GENRE_PASS of the in-genre tracks stay at or under
IN_GENRE_PASS = 0.95


@dataclass(frozen=True)
class NoveltyScale:
    """Which tags count as evidence (indices into the tag logits, with their names), and the scale's two anchors."""

    tags: dict[str, int]  # tag name -> its index in the tagger's logits
    typical: float  # the median in-genre evidence: novelty 0
    threshold: float  # the evidence IN_GENRE_PASS of the in-genre tracks stay under: novelty NOVELTY_THRESHOLD

    def evidence(self, tag_logits: np.ndarray) -> float:
        """The summed probability of the out-of-genre tags, from a track's clip tag logits [n_clips, n_tags]."""
        chosen = tag_logits[:, list(self.tags.values())]
        return float((0.5 * (1.0 + np.tanh(0.5 * chosen))).mean(axis=0).sum())  # sigmoid, as tags.tag_probabilities

    def novelty(self, tag_logits: np.ndarray) -> float:
        """0 (a typical in-genre track) to 1 (music like none of the genres): see the module's docstring."""
        spread = (self.threshold - self.typical) / NOVELTY_THRESHOLD
        return float(np.clip((self.evidence(tag_logits) - self.typical) / spread, 0.0, 1.0))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: object, source: str) -> NoveltyScale:
        """The scale a checkpoint or ONNX file carries; MgcError, naming `source`, when it is damaged."""
        try:
            scale = cls({str(name): int(index) for name, index in fields["tags"].items()},
                        float(fields["typical"]), float(fields["threshold"]))
        except (TypeError, KeyError, ValueError, AttributeError):
            scale = None
        if scale is None or not scale.tags or not (
            math.isfinite(scale.typical) and math.isfinite(scale.threshold) and scale.threshold > scale.typical
        ):
            raise MgcError(f"{source}: its novelty scale is damaged; calibrate it again (`mgc calibrate`)")
        return scale


def fit_novelty(tag_labels: list[str], in_genre_tag_logits: list[np.ndarray]) -> NoveltyScale:
    """The scale of OUT_OF_GENRE_TAGS's evidence, fit on in-genre tracks (their clip tag logits) the model has not trained on."""
    missing = [tag for tag in OUT_OF_GENRE_TAGS if tag not in tag_labels]
    if missing:
        raise MgcError(f"the tagger has no tag {missing[0]!r}: novelty needs musicnn's MSD tags")
    if len(in_genre_tag_logits) < 20:
        raise MgcError(f"{len(in_genre_tag_logits)} tracks: too few to fit a novelty scale on (20 at least)")
    unit = NoveltyScale({tag: tag_labels.index(tag) for tag in OUT_OF_GENRE_TAGS}, 0.0, 1.0)
    evidence = np.array([unit.evidence(logits) for logits in in_genre_tag_logits])
    typical, threshold = np.quantile(evidence, [0.5, IN_GENRE_PASS])
    if threshold <= typical:
        raise MgcError("the in-genre tracks' novelty evidence does not spread: cannot fit a scale on them")
    return NoveltyScale(unit.tags, float(typical), float(threshold))


def auroc(outside: np.ndarray, inside: np.ndarray) -> float:
    """P(an outside track scores above an inside one), ties counting half: 0.5 is chance, 1 a perfect split."""
    above = (outside[:, None] > inside[None, :]).mean()
    return float(above + 0.5 * (outside[:, None] == inside[None, :]).mean())
