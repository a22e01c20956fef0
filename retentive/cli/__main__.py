"""``python -m retentive.cli``: the same as the ``retentive`` command (used by the demo's workers and torchrun)."""

import sys

from retentive.cli import main

sys.exit(main())
