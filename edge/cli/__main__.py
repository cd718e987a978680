"""`python -m edge.cli` runs the `sip-edge` command."""

import sys

from edge.cli.main import main

sys.exit(main())
