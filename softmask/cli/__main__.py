"""``python -m softmask.cli``: the ``softmask`` command."""

import sys

from softmask.cli import main

sys.exit(main())
