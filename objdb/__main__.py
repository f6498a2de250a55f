"""``python -m objdb``: run the object database process (see ``objdb.daemon``)."""

import sys

from objdb.daemon import main

sys.exit(main())
