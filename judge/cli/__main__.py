"""``python -m judge.cli``: the ``thinking-judge`` command line."""

import sys

from judge.cli.main import main

sys.exit(main())
