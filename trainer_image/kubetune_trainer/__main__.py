"""``python -m kubetune_trainer`` entry point."""

import sys

from kubetune_trainer.cli import main

sys.exit(main())
