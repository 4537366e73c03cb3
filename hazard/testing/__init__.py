"""hazard.testing: a deterministic interleaving explorer for code built on hazard's primitives.

``explore(body)`` runs ``body`` once per thread schedule: exhaustively up to a preemption bound
(with dynamic partial-order reduction), or by PCT or random sampling. Threads switch only at
checkpoints (atomics, controlled locks, waits, thread start and join, heap frees,
``yield_now``). A failure comes back shrunk, as a per-thread timeline with a replay token.
"""

from hazard.testing._errors import Deadlock as Deadlock
from hazard.testing._errors import ExplorationFailed as ExplorationFailed
from hazard.testing._errors import LockOrderInversion as LockOrderInversion
from hazard.testing._errors import NondeterminismError as NondeterminismError
from hazard.testing._errors import ReplayDrift as ReplayDrift
from hazard.testing._errors import StepLimitExceeded as StepLimitExceeded
from hazard.testing._errors import UncontrolledThreadError as UncontrolledThreadError
from hazard.testing._explore import ExploreResult as ExploreResult
from hazard.testing._explore import Failure as Failure
from hazard.testing._explore import explore as explore
from hazard.testing._explore import replay as replay
from hazard.testing._explore import spawn as spawn
from hazard.testing._explore import yield_now as yield_now
from hazard.testing._report import print_report as print_report
