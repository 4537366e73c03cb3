"""A do-nothing Scheduler for tests that install their own (the explorer is the real one)."""

from __future__ import annotations

from hazard._checkpoint import Access


class NullScheduler:
    """Implements the Scheduler protocol with no effect; tests override what they observe."""

    def checkpoint(self, obj: object, access: Access, op: str) -> None:
        pass

    def pause(self, timeout: float | None = None) -> bool:
        return True

    def also(self, obj: object, access: Access) -> None:
        pass

    def lock_acquired(self, lock: object) -> None:
        pass

    def lock_released(self, lock: object) -> None:
        pass

    def now(self) -> float:
        return 0.0
