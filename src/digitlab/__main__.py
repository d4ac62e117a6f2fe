"""`python -m digitlab` (and `torchrun -m digitlab`) run the CLI."""

from digitlab.cli import main

raise SystemExit(main())
