"""`python -m gptkit` runs the command line."""

import sys

from gptkit.cli import main

sys.exit(main())
