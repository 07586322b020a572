"""mgcli: music genre classification from the command line.

The library API is `load_model` and `classify`; `mgcli.cli` is a thin
command-line layer over it. Torch is imported lazily so that `mgc --help`
answers at once.
"""

from __future__ import annotations

__version__ = "0.1.0"


class MgcError(Exception):
    """An error the user can act on: the CLI prints it on one line, no traceback."""
