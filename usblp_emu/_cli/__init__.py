"""``usblp-emu``, the command line: one module per command group.

- ``_main``: the parser, ``main`` (the console script) and the exit status.
- ``_common``: what the commands share: the failure path, argument types, the exit rule, JSON.
- ``_stress``: ``stress``; ``_explore``: ``explore``; bench's options and run live in
  ``usblp_emu._bench``.
- ``_printers``: ``list``, ``info``, ``doctor``, and choosing a printer; ``_print``: ``print``
  and ``watch``.
- ``_views``: rich renderables built from snapshots and reports (pure functions).
"""

from usblp_emu._cli._main import main as main
