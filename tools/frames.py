"""The frame protocol's Python codec, for the application layer (HIL harness, fuzzer, tests).

The codec itself lives in :mod:`export.frames`, next to the device runner that also speaks it
(export may not import tools/); this module is the name tools/ uses.
"""

from export.frames import *  # noqa: F401,F403
from export.frames import __all__  # noqa: F401
