"""`python -m digitlab` (and `torchrun -m digitlab`) run the CLI."""

from digitlab.cli import run

raise SystemExit(run())
