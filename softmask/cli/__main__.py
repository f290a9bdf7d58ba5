"""``python -m softmask.cli``: the ``softmask`` command."""

import sys

from softmask.cli import main

if __name__ == "__main__":  # importing the module (test_imports walks them all) runs nothing
    sys.exit(main())
