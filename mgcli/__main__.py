"""`python -m mgcli` (also what torchrun launches)."""

from .cli import main

main()
