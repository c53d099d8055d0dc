"""``python -m modelkit``: the same command as the ``modelkit`` script."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
