"""``python -m coroconf check FILE`` (the same as ``coro config check FILE``)."""

import sys

from coroconf.cli import main

sys.exit(main())
