"""`python -m quorumwatch`: the command line."""

import sys

from quorumwatch.cli import main

sys.exit(main())
