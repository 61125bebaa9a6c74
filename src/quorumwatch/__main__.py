import sys

from quorumwatch.cli import main

sys.exit(main())
