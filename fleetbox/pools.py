"""Bounded worker pools, one per priority tier, and the execution of one attempt.

A tier's pool has a fixed number of slots; the dispatcher never claims more jobs for a tier than
it has free slots, so a flood of low-tier work cannot delay the high tier. Each running job holds
a lease that the appliance's heartbeat extends; a job whose lease is lost is cancelled here,
because another process may already be running it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fleetbox.completer import Completer, Finished
from fleetbox.errors import ErrorClass, NoProcessorError, PermanentError, RateLimitError, classify
from fleetbox.models import Clock, Job, Outcome, SystemClock, Tier
from fleetbox.queues import Handler, QueueSpec
from fleetbox.retry import RetryPolicy

log = logging.getLogger("fleetbox.pools")

AuthHook = Callable[[Job, BaseException], Awaitable[None]]


@dataclass(slots=True, eq=False)
class RunningJob:
    job: Job
    tier: Tier
    #: monotonic time after which the lease may have been lost (no heartbeat got through)
    lease_deadline: float
    task: asyncio.Task[None] | None = None
    started: bool = False
    #: why the task was cancelled: "lease_lost" (write nothing) or "shutdown" (record it)
    cancel_reason: str | None = None
    handler_started: float = field(default=0.0)


class TierPool:
    """The worker slots of one tier."""

    def __init__(self, tier: Tier, size: int) -> None:
        self.tier = tier
        self.size = size
        self.running: dict[int, RunningJob] = {}
        self.done = 0
        self.failed = 0
        self._empty = asyncio.Event()
        self._empty.set()

    def __repr__(self) -> str:
        busy = f"{len(self.running)}/{self.size}"
        return f"<TierPool {self.tier.name.lower()} busy={busy} done={self.done} failed={self.failed}>"

    @property
    def free(self) -> int:
        return max(0, self.size - len(self.running))

    def add(self, entry: RunningJob) -> None:
        self.running[entry.job.id] = entry
        self._empty.clear()

    def remove(self, job_id: int) -> None:
        self.running.pop(job_id, None)
        if not self.running:
            self._empty.set()

    async def wait_empty(self) -> None:
        await self._empty.wait()


class Executor:
    """Runs one attempt: the handler, then the retry decision, then hands the outcome on."""

    def __init__(
        self,
        *,
        registry: Mapping[str, QueueSpec],
        policies: Mapping[str, RetryPolicy],
        default_policy: RetryPolicy,
        completer: Completer,
        clock: Clock,
        on_auth_error: AuthHook | None,
        on_slot_freed: Callable[[Tier], None],
    ) -> None:
        self.registry = registry
        self.policies = policies
        self.default_policy = default_policy
        self.completer = completer
        self.clock = clock
        self.on_auth_error = on_auth_error
        self.on_slot_freed = on_slot_freed
        #: the wall clock: read it with time.time(), a fraction of the cost of datetime.now()
        self._system_clock = type(clock) is SystemClock

    async def run(self, pool: TierPool, entry: RunningJob) -> None:
        entry.started = True
        job = entry.job
        started_at = time.time() if self._system_clock else self.clock.now().timestamp()
        entry.handler_started = time.monotonic()
        outcome: Finished | None = None
        try:
            await self._handler_for(job)(job)
        except asyncio.CancelledError:
            if entry.cancel_reason == "shutdown":
                outcome = self._failed(job, pool.tier, started_at, ErrorClass.TRANSIENT,
                                       "interrupted: the appliance shut down after its grace period", None)  # fmt: skip
            else:
                log.warning(
                    "lease lost; job cancelled", extra={"event": "lease_lost", "job_id": job.id, "queue": job.queue}
                )
            raise
        except Exception as exc:
            error_class = classify(exc)
            retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
            failed = self._failed(job, pool.tier, started_at, error_class, f"{type(exc).__name__}: {exc}", retry_after)
            if (
                error_class is ErrorClass.AUTHENTICATION
                and failed.outcome is Outcome.RETRY
                and self.on_auth_error is not None
            ):
                # Refresh the token before the one retry is scheduled (not when none follows).
                try:
                    await self.on_auth_error(job, exc)
                except Exception:
                    log.exception("token refresh hook failed", extra={"event": "auth_refresh_failed", "job_id": job.id})
            outcome = failed
            pool.failed += 1
        else:
            pool.done += 1
            finished_at = time.time() if self._system_clock else self.clock.now().timestamp()
            outcome = Finished(job.id, job.attempt, job.queue, pool.tier, started_at, finished_at, Outcome.SUCCEEDED)
        finally:
            if outcome is not None:
                self.completer.add(outcome)
            pool.remove(job.id)
            self.on_slot_freed(pool.tier)

    def _handler_for(self, job: Job) -> Handler:
        """The queue's handler, or the reason this attempt must fail without running it."""
        spec = self.registry.get(job.queue)
        if spec is None or spec.handler is None:
            raise NoProcessorError(f"no processor configured for queue {job.queue!r}")
        if job.retries:  # a first attempt has no lost leases to count
            rule = self.policies.get(job.queue, self.default_policy).rule(ErrorClass.LEASE_EXPIRED)
            lost = job.retries.get(ErrorClass.LEASE_EXPIRED.value, 0)
            if rule is not None and lost > rule.max_retries:
                # The job keeps killing or stalling its workers: stop feeding it to them.
                raise PermanentError(f"the lease expired {lost} times; the job may be crashing its workers")
        return spec.handler

    def _failed(
        self, job: Job, tier: Tier, started_at: float, error_class: ErrorClass, message: str, retry_after: float | None
    ) -> Finished:
        now = self.clock.now()
        decision = self.policies.get(job.queue, self.default_policy).decide(
            error_class=error_class, retries=job.retries, attempt=job.attempt,
            max_attempts=job.max_attempts, now=now, retry_after=retry_after,
        )  # fmt: skip
        log.info(
            "job failed",
            extra={"event": "job_failed", "job_id": job.id, "queue": job.queue, "attempt": job.attempt,
                   "error_class": error_class.value, "decision": decision.reason},
        )  # fmt: skip
        return Finished(
            job.id, job.attempt, job.queue, tier, started_at, now.timestamp(),
            Outcome.DEAD if decision.dead else Outcome.RETRY,
            run_at=decision.run_at, retries=decision.retries, error_class=error_class.value,
            error=message if decision.dead is False else f"{message} ({decision.reason})",
        )  # fmt: skip
