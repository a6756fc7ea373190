"""``python -m evidence_daemon`` is the ``evidence-daemon`` command."""

import sys

from .cli import main

sys.exit(main())
