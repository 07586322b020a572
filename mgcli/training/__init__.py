"""Training and scoring: datasets and their cache, augmented training clips, `fit`, evaluation,
cross-validation and data-parallel runs under torchrun."""
