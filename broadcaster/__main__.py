"""``python -m broadcaster``: the same as the ``adw-broadcaster`` command."""

import sys

from .cli import main

sys.exit(main())
