"""``python -m blade``: the Blade command line (see ``blade.cli``)."""

import sys

from blade.cli import main

sys.exit(main())
