"""Limiters: rates per resource and chat, Outlook concurrency per mailbox, pauses after a 429, reload, idle keys."""

from __future__ import annotations

import asyncio
import time

import pytest

from fleetbox.config import RateLimitSettings
from fleetbox.errors import Deferred
from fleetbox.graph.ratelimit import Limiters, RateEvent


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(**values: float) -> RateLimitSettings:
    base: dict[str, float] = {"teams_per_second": 10_000, "teams_per_chat_per_second": 10_000}
    return RateLimitSettings(**{**base, **values})


async def take(limiters: Limiters, resource: str, key: str | None = None, n: int = 1) -> None:
    for _ in range(n):
        async with limiters.acquire(resource, key):
            pass


async def blocked(task: asyncio.Task[None]) -> bool:
    """Whether the task is still waiting after it had every chance to run (a short bounded look)."""
    done, _ = await asyncio.wait({task}, timeout=0.05)
    return not done


def waits(events: list[RateEvent], key: str | None = None) -> list[float]:
    return [e.wait_ms or 0.0 for e in events if e.event == "wait" and e.key == key]


async def test_defaults_are_the_spec() -> None:
    limiters = Limiters(RateLimitSettings())
    by = {(s.resource, s.key): s for s in limiters.snapshot()}
    assert by[("teams", None)].rate_per_second == pytest.approx(50)
    async with limiters.acquire("outlook", "a@contoso.com"), limiters.acquire("teams", "19:chat@thread.v2"):
        pass
    by = {(s.resource, s.key): s for s in limiters.snapshot()}
    assert by[("outlook", "a@contoso.com")].rate_per_second == pytest.approx(10_000 / 600)
    assert by[("teams", "19:chat@thread.v2")].rate_per_second == pytest.approx(1)


async def test_one_chat_is_held_to_its_rate_and_other_chats_are_not() -> None:
    events: list[RateEvent] = []
    limiters = Limiters(limits(teams_per_chat_per_second=10), record=events.append)
    await take(limiters, "teams", "chat-a")
    assert all(wait < 50 for wait in waits(events, "chat-a"))  # the first one is not held back
    started = time.monotonic()
    await take(limiters, "teams", "chat-a")  # evenly spaced: the next one a tenth of a second later
    assert time.monotonic() - started >= 0.09
    assert len([wait for wait in waits(events, "chat-a") if wait >= 90]) == 1
    await take(limiters, "teams", "chat-b")
    # chat-a's spacing (100 ms) does not hold chat-b back; a millisecond a loaded machine takes to
    # hand over the token may be recorded as a wait, and is not the limit.
    assert all(wait < 50 for wait in waits(events, "chat-b")), waits(events, "chat-b")


async def test_requests_are_spaced_so_no_window_of_a_second_holds_more_than_the_rate() -> None:
    limiters = Limiters(limits(teams_per_second=20))
    times = []
    for i in range(30):
        await take(limiters, "teams", f"chat-{i}")
        times.append(time.monotonic())
    assert max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times)) <= 20


async def test_the_appliance_wide_teams_rate_spans_chats() -> None:
    events: list[RateEvent] = []
    limiters = Limiters(limits(teams_per_second=10), record=events.append)
    await take(limiters, "teams", "chat-0")
    await take(limiters, "teams", "chat-new")
    assert waits(events, "chat-new")[0] >= 90
    by = {(s.resource, s.key): s for s in limiters.snapshot()}
    assert by[("teams", None)].waits == 1


async def test_a_rate_below_one_per_second() -> None:
    limiters = Limiters(limits(teams_per_chat_per_second=0.5))
    await take(limiters, "teams", "slow-chat")
    snap = next(s for s in limiters.snapshot() if s.key == "slow-chat")
    assert snap.rate_per_second == pytest.approx(0.5)
    assert snap.available == pytest.approx(0.0, abs=0.01)


async def test_outlook_concurrency_is_per_mailbox() -> None:
    limiters = Limiters(limits(outlook_concurrent_per_mailbox=2))
    release = asyncio.Event()

    async def hold(mailbox: str) -> None:
        async with limiters.acquire("outlook", mailbox):
            await release.wait()

    holders = [asyncio.create_task(hold("a@contoso.com")) for _ in range(2)]
    third = asyncio.create_task(take(limiters, "outlook", "a@contoso.com"))
    assert await blocked(third)
    await asyncio.wait_for(take(limiters, "outlook", "b@contoso.com"), 5)  # another mailbox goes at once
    release.set()
    await asyncio.wait_for(asyncio.gather(third, *holders), 5)


async def test_attachment_transfers_are_limited_by_operation() -> None:
    limiters = Limiters(limits(attachments_concurrent=1))
    release = asyncio.Event()

    async def transfer() -> None:
        async with limiters.operation("attachments"):
            await release.wait()

    first = asyncio.create_task(transfer())
    second = asyncio.create_task(transfer())
    assert await blocked(second)
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)


def test_operation_names_its_resource() -> None:
    with pytest.raises(ValueError, match="no operation limit for resource 'teams'"):
        Limiters(limits()).operation("teams")


async def test_a_pause_holds_the_resource_back_and_is_recorded() -> None:
    events: list[RateEvent] = []
    limiters = Limiters(limits(), record=events.append)
    limiters.pause("teams", "chat-a", 0.2)
    assert events[-1] == RateEvent("teams", "chat-a", "throttled", None, 200.0)
    snap = next(s for s in limiters.snapshot() if s.resource == "teams" and s.key is None)
    assert snap.throttled == 1
    assert snap.paused_until is not None and 0.1 < snap.paused_until - time.time() <= 0.2
    started = time.monotonic()
    # Graph does not say which Teams limit it hit: every chat waits.
    await take(limiters, "teams", "chat-b")
    assert time.monotonic() - started >= 0.19
    assert waits(events, "chat-b")[0] >= 190


async def test_an_outlook_pause_holds_back_only_that_mailbox() -> None:
    events: list[RateEvent] = []
    limiters = Limiters(limits(), record=events.append)
    limiters.pause("outlook", "a@contoso.com", 30)
    await asyncio.wait_for(take(limiters, "outlook", "b@contoso.com"), 5)
    paused = asyncio.create_task(take(limiters, "outlook", "a@contoso.com"))
    assert await blocked(paused)
    paused.cancel()
    snap = next(s for s in limiters.snapshot() if s.key == "a@contoso.com")
    assert snap.throttled == 1 and snap.paused_until is not None


async def test_pauses_only_grow() -> None:
    clock = FakeClock()
    limiters = Limiters(limits(), clock=clock)
    limiters.pause("subscriptions", None, 60)
    limiters.pause("subscriptions", None, 5)
    snap = next(s for s in limiters.snapshot() if s.resource == "subscriptions")
    assert snap.paused_until is not None and snap.paused_until - time.time() > 50


async def test_apply_takes_effect_for_later_acquires() -> None:
    limiters = Limiters(limits(teams_per_chat_per_second=2))
    await take(limiters, "teams", "chat-a")
    limiters.apply(limits(teams_per_chat_per_second=1000))
    started = time.monotonic()
    await take(limiters, "teams", "chat-a", 10)  # the old rate would hold each for half a second
    assert time.monotonic() - started < 0.4
    snap = next(s for s in limiters.snapshot() if s.key == "chat-a")
    assert snap.rate_per_second == pytest.approx(1000)
    assert limiters.settings.teams_per_chat_per_second == 1000


async def test_apply_changes_outlook_concurrency() -> None:
    limiters = Limiters(limits(outlook_concurrent_per_mailbox=1))
    release = asyncio.Event()

    async def hold() -> None:
        async with limiters.acquire("outlook", "a@contoso.com"):
            await release.wait()

    holder = asyncio.create_task(hold())
    second = asyncio.create_task(take(limiters, "outlook", "a@contoso.com"))
    assert await blocked(second)
    second.cancel()
    limiters.apply(limits(outlook_concurrent_per_mailbox=2))
    await asyncio.wait_for(take(limiters, "outlook", "a@contoso.com"), 5)
    release.set()
    await holder


async def test_idle_keys_are_dropped() -> None:
    clock = FakeClock()
    limiters = Limiters(limits(), clock=clock, idle_seconds=60)
    for i in range(1000):
        await take(limiters, "teams", f"chat-{i}")
    limiters.pause("outlook", "paused@contoso.com", 3600)
    assert limiters.key_count == 1001
    clock.now += 61
    await take(limiters, "teams", "chat-new")
    # the paused mailbox stays: forgetting it would forget its pause
    assert limiters.key_count == 2
    assert {s.key for s in limiters.snapshot() if s.key} == {"chat-new", "paused@contoso.com"}


async def test_keys_in_use_are_kept() -> None:
    clock = FakeClock()
    limiters = Limiters(limits(), clock=clock, idle_seconds=60)
    release = asyncio.Event()

    async def hold() -> None:
        async with limiters.acquire("outlook", "busy@contoso.com"):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)  # let it take its slot
    clock.now += 10_000
    await take(limiters, "teams", "chat-new")
    assert "busy@contoso.com" in {s.key for s in limiters.snapshot()}
    release.set()
    await holder


async def test_a_failing_recorder_never_breaks_a_request() -> None:
    asked: list[RateEvent] = []

    def broken(event: RateEvent) -> None:
        asked.append(event)
        raise RuntimeError("recorder down")

    limiters = Limiters(limits(), record=broken)
    limiters.pause("teams", None, 0.01)
    acquired = False
    async with limiters.acquire("teams", "chat"):
        acquired = True
    # the pause and the wait were reported to the recorder, which failed, and the request went ahead
    assert acquired
    assert [(e.resource, e.event) for e in asked] == [("teams", "throttled"), ("teams", "wait")]


async def test_a_job_back_at_its_turn_goes_away_again_for_a_pause_that_began_meanwhile() -> None:
    # A job deferred for its turn comes back; if Graph paused the resource (a 429) while it was
    # away, it must not wait the pause out on its worker slot (which the tier's mail needs).
    clock = FakeClock()
    limiters = Limiters(limits(defer_after_seconds=2), clock=clock)
    limiters.pause("teams", "chat-a", 10)
    with limiters.job(7), pytest.raises(Deferred) as first:
        async with limiters.acquire("teams", "chat-a"):
            pass
    assert first.value.seconds == pytest.approx(10)
    clock.now += 10  # its turn: the first pause is over, and another 429 paused Teams for 30 s
    limiters.pause("teams", "chat-b", 30)
    with limiters.job(7), pytest.raises(Deferred) as again:
        async with limiters.acquire("teams", "chat-a"):
            pass
    assert again.value.seconds == pytest.approx(30)
    clock.now += 30  # back at its new turn, nothing paused: it goes at once
    with limiters.job(7):
        async with limiters.acquire("teams", "chat-a"):
            pass
