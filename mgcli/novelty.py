"""Novelty: how far a track is from all ten genres, read from the pretrained tagger's tags.

A genre classifier gives every track one of its genres; a folk or techno track gets a
confident wrong one. The default keeps the Million Song Dataset tagger it was fine-tuned
from beside it (Musicnn's `keep_tagger`: the tagger's own mid and back end on the one shared
front end, 3% more compute), and the tagger hears styles outside the ten genres. A track's
evidence is a weighted sum of its tags' probabilities (each clip's sigmoid, averaged over
the clips, as `mgc tags` gives them). The weights are learnt, where music outside the genres
is given (`mgc calibrate --outside`), by a logistic regression of those tracks against the
in-genre ones over all the tags (`tag_weights`): no tag names Latin music or R&B, yet their
tag profiles differ. Without such music, the evidence is the sum of OUT_OF_GENRE_TAGS.

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

# The MSD tags that name styles outside GTZAN's ten genres, chosen by what they mean: the
# evidence where no outside music is given to learn weights from.
OUT_OF_GENRE_TAGS = ("electronic", "electronica", "electro", "House", "ambient", "experimental", "folk", "rnb", "soul", "funk")
NOVELTY_THRESHOLD = 0.5  # the novelty that IN_GENRE_PASS of the in-genre tracks stay at or under
IN_GENRE_PASS = 0.95
# The logistic regression's L2 penalty on standardised tag probabilities, chosen by
# cross-validation over artists (benchmarks/novelty.py).
L2_PENALTY = 0.01
CROSS_FIT_FOLDS = 5


@dataclass(frozen=True)
class NoveltyScale:
    """Which tags count as evidence (indices into the tag logits, with their names), their weights, and the scale's two anchors."""

    tags: dict[str, int]  # tag name -> its index in the tagger's logits
    typical: float  # the median in-genre evidence: novelty 0
    threshold: float  # the evidence IN_GENRE_PASS of the in-genre tracks stay under: novelty NOVELTY_THRESHOLD
    weights: dict[str, float] | None = None  # tag name -> its weight in the evidence; None: 1 each

    def evidence(self, tag_logits: np.ndarray) -> float:
        """The weighted sum of the tags' probabilities, from a track's clip tag logits [n_clips, n_tags]."""
        probabilities = mean_tag_probabilities(tag_logits[:, list(self.tags.values())])
        weights = np.ones(len(self.tags)) if self.weights is None else np.array([self.weights[tag] for tag in self.tags])
        return float(probabilities @ weights)

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
            weights = fields.get("weights")
            scale = cls({str(name): int(index) for name, index in fields["tags"].items()},
                        float(fields["typical"]), float(fields["threshold"]),
                        None if weights is None else {str(name): float(weights[name]) for name in fields["tags"]})
        except (TypeError, KeyError, ValueError, AttributeError):
            scale = None
        if scale is None or not scale.tags or not (
            math.isfinite(scale.typical) and math.isfinite(scale.threshold) and scale.threshold > scale.typical
            and all(math.isfinite(w) for w in (scale.weights or {}).values())
        ):
            raise MgcError(f"{source}: its novelty scale is damaged; calibrate it again (`mgc calibrate`)")
        return scale


def fit_novelty(
    tag_labels: list[str], in_genre_tag_logits: list[np.ndarray], outside_tag_logits: list[np.ndarray] = (),
    penalty: float = L2_PENALTY,
) -> NoveltyScale:
    """The novelty scale, fit on in-genre tracks (their clip tag logits) the model has not trained on.

    With tracks outside the genres, the evidence weighs every tag as `tag_weights` learns from both,
    and the scale is fit on the in-genre tracks' cross-fitted evidence (each track's from weights
    learnt without it): on the tracks it learnt from, the regression pushes the in-genre evidence
    down, and a scale fit there let 85% of new in-genre tracks pass instead of 95%. Without such
    tracks, the evidence sums OUT_OF_GENRE_TAGS.
    """
    if len(in_genre_tag_logits) < 20:
        raise MgcError(f"{len(in_genre_tag_logits)} tracks: too few to fit a novelty scale on (20 at least)")
    if len(outside_tag_logits):
        if len(outside_tag_logits) < 10:
            raise MgcError(f"{len(outside_tag_logits)} tracks outside the genres: too few to learn the novelty's weights from (10 at least)")
        inside = np.array([mean_tag_probabilities(t) for t in in_genre_tag_logits])
        outside = np.array([mean_tag_probabilities(t) for t in outside_tag_logits])
        weights = tag_weights(inside, outside, penalty)
        unit = NoveltyScale(dict(zip(tag_labels, range(len(tag_labels)))), 0.0, 1.0, dict(zip(tag_labels, weights.tolist())))
        evidence = cross_fitted_evidence(inside, outside, penalty)
    else:
        missing = [tag for tag in OUT_OF_GENRE_TAGS if tag not in tag_labels]
        if missing:
            raise MgcError(f"the tagger has no tag {missing[0]!r}: novelty needs musicnn's MSD tags")
        unit = NoveltyScale({tag: tag_labels.index(tag) for tag in OUT_OF_GENRE_TAGS}, 0.0, 1.0)
        evidence = np.array([unit.evidence(logits) for logits in in_genre_tag_logits])
    typical, threshold = np.quantile(evidence, [0.5, IN_GENRE_PASS])
    if threshold <= typical:
        raise MgcError("the in-genre tracks' novelty evidence does not spread: cannot fit a scale on them")
    return NoveltyScale(unit.tags, float(typical), float(threshold), unit.weights)


def mean_tag_probabilities(tag_logits: np.ndarray) -> np.ndarray:
    """A track's tag probabilities [n_tags]: each clip's sigmoid (as tags.tag_probabilities), averaged over
    its clips [n_clips, n_tags]."""
    return (0.5 * (1.0 + np.tanh(0.5 * tag_logits))).mean(axis=0)


def cross_fitted_evidence(inside: np.ndarray, outside: np.ndarray, penalty: float) -> np.ndarray:
    """Each inside track's evidence [n] under `tag_weights` learnt without its fold (CROSS_FIT_FOLDS random folds, seeded)."""
    rng = np.random.default_rng(0)
    inside_fold = rng.permutation(len(inside)) % CROSS_FIT_FOLDS
    outside_fold = rng.permutation(len(outside)) % CROSS_FIT_FOLDS
    evidence = np.zeros(len(inside))
    for fold in range(CROSS_FIT_FOLDS):
        held = inside_fold == fold
        evidence[held] = inside[held] @ tag_weights(inside[~held], outside[outside_fold != fold], penalty)
    return evidence


def tag_weights(inside: np.ndarray, outside: np.ndarray, penalty: float) -> np.ndarray:
    """Per-tag weights [n_tags] whose weighted sum of a track's tag probabilities tells outside tracks from inside ones.

    A logistic regression on the standardised probabilities of `inside` and `outside` tracks
    [n, n_tags], the two groups weighted equally (their mean log-loss, plus `penalty`/2 times the
    squared weights), fit by Newton's method; its weights are returned on the raw probabilities'
    scale (the intercept drops out: the novelty scale is fit on the evidence afterwards).
    """
    features = np.concatenate([inside, outside])
    mean, spread = features.mean(axis=0), features.std(axis=0) + 1e-6
    x = np.hstack([(features - mean) / spread, np.ones((len(features), 1))])
    y = np.concatenate([np.zeros(len(inside)), np.ones(len(outside))])
    sample = np.concatenate([np.full(len(inside), 0.5 / len(inside)), np.full(len(outside), 0.5 / len(outside))])
    ridge = np.full(x.shape[1], penalty)
    ridge[-1] = 0.0  # the intercept goes free
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (sample * (p - y)) + ridge * w
        hessian = (x * (sample * p * (1 - p))[:, None]).T @ x + np.diag(ridge)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(w)), gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1] / spread


def auroc(outside: np.ndarray, inside: np.ndarray) -> float:
    """P(an outside track scores above an inside one), ties counting half: 0.5 is chance, 1 a perfect split."""
    above = (outside[:, None] > inside[None, :]).mean()
    return float(above + 0.5 * (outside[:, None] == inside[None, :]).mean())
