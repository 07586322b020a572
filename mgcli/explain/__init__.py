"""Pictures of what a model hears: Grad-CAM and integrated gradients (`explain`), learned filters
and spectrograms (`inspect`), and the figures that draw them (`plot`, needs mgcli[plot])."""
