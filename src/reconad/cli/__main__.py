"""`python -m reconad.cli`: the same as the `reconad` command."""

import sys

from reconad.cli import main

sys.exit(main())
