"""``python -m usblp_emu``: the ``usblp-emu`` command line."""

import sys

from usblp_emu._cli._main import main

sys.exit(main())
