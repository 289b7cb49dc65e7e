"""`python -m carve ...` is the `carve` command."""

import sys

from carve.cli.main import main

sys.exit(main())
