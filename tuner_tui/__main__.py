"""`python -m tuner_tui`: the same as the `tuner-tui` command."""

import sys

from tuner_tui.cli import main

sys.exit(main())
