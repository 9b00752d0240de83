"""``python -m kubetune``: the same as the ``kubetune`` console script."""

import sys

from kubetune.cli import main

sys.exit(main())
