"""Pictures of what a model hears: Grad-CAM and integrated gradients (`explain`), learned filters
and spectrograms (`inspect`), and the figures that draw them (`plot`, needs mgcli[plot])."""

# The figures' sizes in pixels: here, not in plot.py, so that the commands' help can name them
# without importing the plotting code at every start (7 ms of `mgc predict`'s).
EXPLAIN_PIXELS = (1400, 1000)  # mgc explain
TIMELINE_PIXELS = (1200, 400)  # mgc predict --timeline-png
CUTOFFS_PIXELS = (1200, 600)  # mgc inspect: sinc-cutoffs.png
RESPONSES_PIXELS = (1200, 900)  # mgc inspect: sinc-responses.png
SPECTROGRAMS_PIXELS = (1600, 800)  # mgc inspect --audio: spectrograms.png
FILTERS_PIXELS = (1600, 900)  # mgc inspect: front-end-filters.png
