"""hazard: safe memory reclamation for Python threads, and the tools to check it.

Atomics, hazard pointers, kernel-style reference counts, RCU and an emulated KASAN-style heap;
the deterministic interleaving explorer lives in :mod:`hazard.testing`. Knows nothing of USB.
"""

from hazard._atomics import AtomicInt as AtomicInt
from hazard._atomics import AtomicRef as AtomicRef
from hazard._checkpoint import monotonic as monotonic
from hazard._checkpoint import pause as pause
from hazard._checkpoint import sleep as sleep
from hazard._errors import HazardError as HazardError
from hazard._errors import HazardUsageError as HazardUsageError
from hazard._hazptr import HazardDomain as HazardDomain
from hazard._hazptr import HazardSlot as HazardSlot
from hazard._hazptr import HazardStatistics as HazardStatistics
from hazard._heap import Buffer as Buffer
from hazard._heap import DoubleFree as DoubleFree
from hazard._heap import Heap as Heap
from hazard._heap import HeapError as HeapError
from hazard._heap import HeapLeak as HeapLeak
from hazard._heap import HeapObject as HeapObject
from hazard._heap import HeapStatistics as HeapStatistics
from hazard._heap import InvalidFree as InvalidFree
from hazard._heap import Leak as Leak
from hazard._heap import OutOfBounds as OutOfBounds
from hazard._heap import Stack as Stack
from hazard._heap import UseAfterFree as UseAfterFree
from hazard._hpref import Counted as Counted
from hazard._hpref import Hpref as Hpref
from hazard._hpref import HprefBorrow as HprefBorrow
from hazard._rcu import Rcu as Rcu
from hazard._rcu import RcuStatistics as RcuStatistics
from hazard._refcount import REFCOUNT_MAX as REFCOUNT_MAX
from hazard._refcount import REFCOUNT_SATURATED as REFCOUNT_SATURATED
from hazard._refcount import Refcount as Refcount
from hazard._refcount import RefcountViolation as RefcountViolation
from hazard._refcount import Violation as Violation
from hazard._refcount import ViolationKind as ViolationKind
from hazard._refcount import get_refcount_reporter as get_refcount_reporter
from hazard._refcount import set_refcount_reporter as set_refcount_reporter
from hazard._sync import Condition as Condition
from hazard._sync import Event as Event
from hazard._sync import Lock as Lock
from hazard._sync import RwSemaphore as RwSemaphore
