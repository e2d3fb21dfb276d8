"""Owned background tasks that survive their own failures.

Every long-running loop of an appliance (dispatcher, completer, heartbeat, reaper, listener,
scheduler, rate-event writer, stream sampler) runs under one :class:`Supervisor`. When a loop
raises, whatever the exception (a driver fault the translation did not foresee, a bug), the
supervisor logs it with its traceback (``task_failed``), marks the task failing, waits a backoff
(1, 2, 4 ... up to 30 s) and starts the loop again. A loop that then runs for a while without
failing is healthy again (``task_recovered``). Nothing a loop raises stops the appliance; the
appliance's health and ``/readyz`` report the tasks that are failing, and the monitor raises an
alert when one has been failing for a while.

Tasks stop in the explicit order the owner gives (:meth:`Supervisor.stop`), each cancelled and
awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fleetbox.supervise")

#: Seconds before a failed loop is started again: doubled after each failure in a row.
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
#: A loop that ran this long since its last restart is healthy again.
HEALTHY_AFTER = 60.0


@dataclass(slots=True)
class TaskState:
    """One supervised task: how often it failed and whether it is failing now."""

    name: str
    failures: int = 0
    #: failures in a row (reset once it ran HEALTHY_AFTER seconds without failing)
    streak: int = 0
    last_error: str | None = None
    #: monotonic time of the first failure of the current streak (None: healthy)
    failing_since: float | None = None
    restarts: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


class Supervisor:
    """Starts loops as named tasks and restarts each one that raises, with backoff.

    Args:
        monotonic: the clock of backoffs and failure ages (tests pass their own).
        sleep: how to wait out a backoff (tests pass one that returns at once).
        on_failure: called with the task's state after each failure (the appliance counts it
            in its metrics).
    """

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_failure: Callable[[TaskState], None] | None = None,
    ) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._on_failure = on_failure
        self.tasks: dict[str, TaskState] = {}

    def __repr__(self) -> str:
        failing = sorted(name for name, s in self.tasks.items() if s.failing)
        return f"<Supervisor tasks={len(self.tasks)} failing={failing}>"

    def spawn(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> TaskState:
        """Run ``loop()`` as the task ``name``; when it raises, log, back off and call it again.

        A loop that returns ends its task (a finished job, not a failure).
        """
        if name in self.tasks and self.tasks[name].task is not None and not self.tasks[name].task.done():  # type: ignore[union-attr]
            raise RuntimeError(f"task {name} is already running")
        state = self.tasks.get(name) or TaskState(name)
        self.tasks[name] = state
        state.task = asyncio.get_running_loop().create_task(self._keep(state, loop), name=name)
        return state

    async def _keep(self, state: TaskState, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        backoff = BACKOFF_START
        while True:
            started = self._monotonic()
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                now = self._monotonic()
                if now - started >= HEALTHY_AFTER:
                    backoff = BACKOFF_START
                    state.streak = 0
                state.failures += 1
                state.streak += 1
                state.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if state.failing_since is None:
                    state.failing_since = now
                log.error(
                    "background task failed; restarting it after a backoff",
                    exc_info=exc,
                    extra={
                        "event": "task_failed",
                        "task": state.name,
                        "error": state.last_error,
                        "failures_in_a_row": state.streak,
                        "backoff_seconds": backoff,
                    },
                )
                if self._on_failure is not None:
                    self._on_failure(state)
                await self._sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                state.restarts += 1
                asyncio.get_running_loop().call_later(HEALTHY_AFTER, self._maybe_recovered, state, state.restarts)

    def _maybe_recovered(self, state: TaskState, restart: int) -> None:
        # Healthy again once it ran HEALTHY_AFTER seconds since this restart with no new failure.
        if state.restarts == restart and state.failing and state.task is not None and not state.task.done():
            state.failing_since = None
            state.streak = 0
            log.info("background task recovered", extra={"event": "task_recovered", "task": state.name})

    def failing(self) -> dict[str, TaskState]:
        """The tasks failing now, by name."""
        return {name: s for name, s in self.tasks.items() if s.failing}

    def running(self, name: str) -> bool:
        state = self.tasks.get(name)
        return state is not None and state.task is not None and not state.task.done()

    async def stop(self, *names: str) -> None:
        """Cancel these tasks, in this order, each awaited before the next."""
        for name in names:
            state = self.tasks.get(name)
            task = state.task if state is not None else None
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            assert state is not None
            state.task = None

    async def stop_all(self) -> None:
        """Cancel every task still running (in the order they were started, last first)."""
        await self.stop(*reversed(list(self.tasks)))
