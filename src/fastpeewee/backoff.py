"""Back-off for opening connections while the database is down.

Without it, every caller that finds no idle connection tries to connect, so a
burst of requests against a stopped server is a burst of connects (each
waiting out a refusal or a connect timeout). A pool keeps one
:class:`ConnectBackoff`; the rule, all of it here:

- a failed connect counts only when :func:`~fastpeewee.errors.is_unavailable`
  says the database is down or unreachable (refused, reset, timed out, too many
  connections, starting up). A wrong password or database name is no outage:
  it is raised to every caller, as before;
- from the second failure in a row, nobody tries for a window of
  ``initial * 2 ** (failures - 2)`` seconds, capped at ``cap``, each window
  drawn between half of that and all of it (jitter, so that the pools of
  several processes do not try in step); callers inside it fail at once with
  :class:`~fastpeewee.errors.PoolBackoff`, raised from the last connect error;
- failures of connects that ran side by side count once (a connect counts
  only if no failure was counted since it began; the others only update the
  error reported), so a burst of callers failing together does not jump to
  the cap;
- one successful connect ends it all.

A single failure opens no window: a connect that fails once (a connection
killed, a server restarting) is retried by the next caller at once. After a
window the callers that arrive while the first connects are under way try
too (each holds a slot of the pool, so at most ``pool_size`` at once); with
the server down those fail within a round trip, so there are few.
"""

from __future__ import annotations

import random
import threading
import time

from .errors import PoolBackoff, is_unavailable

__all__ = ["ConnectBackoff"]


class ConnectBackoff:
    """When a pool may try to connect, after failures. Thread-safe.

    Example::

        ticket = backoff.admit()         # raises PoolBackoff inside a window
        try:
            conn = connect()
        except BaseException as exc:
            backoff.failed(exc, ticket)
            raise
        backoff.succeeded()
    """

    def __init__(self, name: str, initial: float, cap: float) -> None:
        self.name = name
        self.initial = initial
        self.cap = cap
        self.failures = 0
        """Connect failures in a row (side-by-side ones counted once)."""
        self.until = 0.0
        """``time.monotonic()`` at which the current window ends."""
        self.last: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when ``initial`` is 0: every caller connects, as without back-off."""
        return self.initial > 0

    def admit(self) -> int:
        """Let a connect go ahead, returning its ticket for :meth:`failed`, or
        raise :class:`PoolBackoff` (from the last error) inside a window."""
        failures = self.failures
        if not failures or not self.enabled:
            return failures
        now = time.monotonic()
        with self._lock:
            if now >= self.until:
                return self.failures
            error = self._refusal(now)
            last = self.last
        raise error from last

    def failed(self, exc: BaseException, ticket: int) -> None:
        """A connect admitted by :meth:`admit` with ``ticket`` raised ``exc``."""
        if not isinstance(exc, Exception) or not self.enabled or not is_unavailable(exc):
            return  # cancelled, or a mistake in the settings: no back-off
        with self._lock:
            self.last = exc
            if ticket != self.failures:
                return  # a failure was counted since this connect began: same wave
            self.failures += 1
            self.until = time.monotonic() + self._window()

    def succeeded(self) -> None:
        """A connect went through: the database is back."""
        if self.failures:
            with self._lock:
                self.failures = 0
                self.until = 0.0
                self.last = None

    def _window(self) -> float:
        if self.failures < 2:
            return 0.0
        full = min(self.cap, self.initial * 2.0 ** (self.failures - 2))
        return full * (0.5 + random.random() / 2)  # jitter, not secrecy

    def _refusal(self, now: float) -> PoolBackoff:
        last = self.last
        why = f"{type(last).__name__}: {last}" if last is not None else "unknown"
        return PoolBackoff(
            f"pool {self.name!r}: not connecting for another {self.until - now:.2f} s "
            f"after {self.failures} failed "
            f"connect(s) in a row (last: {why}); the database is down or unreachable, "
            f"retry later (back-off {self.initial:g} s doubling up to {self.cap:g} s: "
            "connect_backoff, connect_backoff_max)"
        )
