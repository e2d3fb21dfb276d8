"""Runs one attempt: the handler, then asks the retry policy what follows, then hands the outcome
to the completer.

A job whose payload could not be decoded is not handed to its handler: it fails at once as
poison. What a handler returns (anything but None) is its result, stored with the job for its
dependents (``job.parents``); a result that cannot be stored (not JSON, too large) fails the
attempt for good: running the handler again would return the same. A handler that raises
:class:`~fleetbox.errors.Deferred` gives its slot back: the job waits
until the time it names and the attempt does not count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from fleetbox import rules
from fleetbox.errors import (
    Deferred,
    ErrorClass,
    InvalidInput,
    JobError,
    NoProcessorError,
    PermanentError,
    PoisonError,
    classify,
)
from fleetbox.models import Clock, Job, Outcome, SystemClock, Tier, UndecodablePayload
from fleetbox.worker.completer import Finished
from fleetbox.worker.pools import CancelReason, RunningJob, TierPool
from fleetbox.worker.registry import Handler, QueueSpec
from fleetbox.worker.retry import RetryPolicies

log = logging.getLogger("fleetbox.executor")

AuthHook = Callable[[Job, BaseException], Awaitable[None]]


class Executor:
    """Runs attempts; every retry decision comes from :class:`RetryPolicies`."""

    def __init__(
        self,
        *,
        registry: Mapping[str, QueueSpec],
        policies: RetryPolicies,
        complete: Callable[[Finished], None],
        clock: Clock,
        on_auth_error: AuthHook | None,
        on_slot_freed: Callable[[Tier], None],
    ) -> None:
        self.registry = registry
        self.policies = policies
        self._complete = complete
        self.clock = clock
        self.on_auth_error = on_auth_error
        self.on_slot_freed = on_slot_freed
        #: the wall clock: read it with time.time(), a fraction of the cost of datetime.now()
        self._system_clock = type(clock) is SystemClock

    def _epoch(self) -> float:
        return time.time() if self._system_clock else self.clock.now().timestamp()

    async def run(self, pool: TierPool, entry: RunningJob) -> None:
        entry.started = True
        job = entry.job
        started_at = self._epoch()
        entry.handler_started = time.monotonic()
        outcome: Finished | None = None
        result = None
        try:
            returned = await self._handler_for(job)(job)
            if returned is not None:
                try:
                    result = rules.encode_result(returned)
                except InvalidInput as exc:
                    raise PermanentError(f"the handler's result cannot be stored: {exc}") from None
        except asyncio.CancelledError:
            if entry.cancel_reason is CancelReason.SHUTDOWN:
                outcome = self._failed(
                    job,
                    pool.tier,
                    started_at,
                    ErrorClass.TRANSIENT,
                    "interrupted: the appliance shut down after its grace period",
                    None,
                )
            else:
                log.warning(
                    "lease lost; job cancelled", extra={"event": "lease_lost", "job_id": job.id, "queue": job.queue}
                )
            raise
        except Deferred as exc:
            run_at = rules.later(self.clock.now(), exc.seconds)
            outcome = Finished(
                job.id, job.attempt, job.queue, pool.tier, started_at, self._epoch(), Outcome.DEFERRED, run_at=run_at
            )
        except Exception as exc:
            error_class = classify(exc)
            retry_after = exc.retry_after if isinstance(exc, JobError) else None
            if not isinstance(retry_after, int | float) or retry_after != retry_after:
                retry_after = None  # a subclass's own attribute that is not a number of seconds
            failed = self._failed(job, pool.tier, started_at, error_class, _describe(exc), retry_after)
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
            outcome = Finished(
                job.id, job.attempt, job.queue, pool.tier, started_at, self._epoch(), Outcome.SUCCEEDED, result=result
            )
        finally:
            if outcome is not None:
                self._complete(outcome)
            pool.remove(job.id)
            self.on_slot_freed(pool.tier)

    def _handler_for(self, job: Job) -> Handler:
        """The queue's handler, or the reason this attempt must fail without running it."""
        if type(job.data) is not dict:
            reason = job.data.summary() if isinstance(job.data, UndecodablePayload) else "not a JSON object"
            raise PoisonError(f"the payload cannot be decoded: {reason}")
        spec = self.registry.get(job.queue)
        if spec is None or spec.handler is None:
            raise NoProcessorError(f"no processor configured for queue {job.queue!r}")
        return spec.handler

    def _failed(
        self, job: Job, tier: Tier, started_at: float, error_class: ErrorClass, message: str, retry_after: float | None
    ) -> Finished:
        now = self.clock.now()
        decision = self.policies.decide(
            job.queue,
            error_class=error_class,
            retries=job.retries,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            now=now,
            retry_after=retry_after,
            job=job,
        )
        log.info(
            "job failed",
            extra={
                "event": "job_failed",
                "job_id": job.id,
                "queue": job.queue,
                "attempt": job.attempt,
                "error_class": error_class.value,
                "decision": decision.reason,
            },
        )
        return Finished(
            job.id,
            job.attempt,
            job.queue,
            tier,
            started_at,
            now.timestamp(),
            Outcome.DEAD if decision.dead else Outcome.RETRY,
            run_at=decision.run_at,
            retries=decision.retries,
            error_class=error_class.value,
            error=message if not decision.dead else f"{message} ({decision.reason})",
        )


def _describe(exc: BaseException) -> str:
    """``Type: message`` of a handler's exception. Its ``__str__`` is the handler's code and may
    raise: that must not keep the attempt's outcome from being written."""
    try:
        text = str(exc)
    except Exception:
        text = "(the exception's message could not be read)"
    return f"{type(exc).__name__}: {text}"
