"""``python -m tools.cli``: the ``prune-and-export`` command line."""

import sys

from tools.cli import main

sys.exit(main())
