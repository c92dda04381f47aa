"""`python -m graphcomp ...`: the same as the `graphcomp` command."""

import sys

from graphcomp.cli import main

sys.exit(main())
