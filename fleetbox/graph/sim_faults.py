"""Fault mode of the Graph simulator: rehearse Graph's and Entra's bad days without writing code.

``[graph.simulator.faults]`` (or ``fleetbox run --simulate-faults PROFILE``) gives rates and
windows (:class:`~fleetbox.config.SimulatedFaultSettings`); :class:`FaultMode` draws them for every
request the simulator receives:

- **429** TooManyRequests with Retry-After (``throttle_rate``). Like Graph, the resource the request
  was aimed at then stays throttled for the Retry-After: a mailbox (every Outlook route of it), a
  chat, a channel, else the URL itself. A request that arrives inside that window is answered 429
  again (with the rest of the window) and counted in :attr:`FaultMode.inside_windows`.
- **503** and **504** without Retry-After, **slow answers**, **dropped connections** (the request is
  not acted on), and **401** InvalidAuthenticationToken: the token is revoked early (so every
  request carrying it gets the 401), only ever a token over a minute old, so the one retry with a
  fresh token that fleetbox makes succeeds.
- **503 bursts**: for ``unavailable_burst_seconds`` in every ``unavailable_burst_every_seconds``,
  every Graph request is answered 503.
- **Entra outage**: for ``entra_outage_seconds`` (from ``entra_outage_after_seconds`` after the
  start, again every ``entra_outage_every_seconds``) the token endpoint answers 503
  ``temporarily_unavailable``. Every access token expires as the outage begins (seen at the first
  request inside it), so the client has to ask Entra during the outage, which is when one hurts.

The per-request faults and bursts hit only Graph requests (``/v1.0/``) matching ``routes``; the
pre-authenticated upload and download URLs are left alone. Windows are timed on ``clock`` (the
appliance's clock, seconds); the Retry-After windows in real time (``RecordedRequest.at``), as
Graph's own and fleetbox's limiters are.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from fleetbox.config import SimulatedFaultSettings
from fleetbox.graph.sim_common import GraphError, OAuthError, TokenInfo, retry_after_header

log = logging.getLogger(__name__)

#: a token this young is never revoked by a 401 fault: fleetbox's one retry after a 401 goes with a
#: fresh token, and a rehearsal must not dead-letter a job by chance
MIN_REVOKED_TOKEN_AGE_S = 60.0

_MAILBOX = re.compile(r"^/v1\.0/users/([^/]+)/(?:messages|sendMail|mailFolders)", re.IGNORECASE)
_CHAT = re.compile(r"^/v1\.0/chats/([^/]+)/", re.IGNORECASE)
_CHANNEL = re.compile(r"^/v1\.0/teams/([^/]+)/channels/([^/]+)/", re.IGNORECASE)
_TOKEN = re.compile(r"/oauth2/v2\.0/token$")


class FaultKind(StrEnum):
    """What the fault mode did to a request."""

    THROTTLED = "throttled"  # a new 429 window
    INSIDE_WINDOW = "inside_window"  # a request inside a 429 window (answered 429 again)
    UNAVAILABLE = "unavailable"  # 503
    GATEWAY_TIMEOUT = "gateway_timeout"  # 504
    UNAUTHORIZED = "unauthorized"  # 401, token revoked
    SLOW = "slow"
    DROPPED = "dropped"
    BURST = "burst"  # 503 inside a burst
    ENTRA_OUTAGE = "entra_outage"  # the token endpoint answered 503


@dataclass(frozen=True)
class ThrottleWindow:
    """A 429 the fault mode answered: ``scope`` is throttled from ``start`` to ``end`` (monotonic
    seconds, the clock of :attr:`RecordedRequest.at`); ``index`` is the request's place in
    ``GraphSimulator.requests``."""

    scope: tuple[str, ...]
    start: float
    end: float
    index: int


@dataclass(frozen=True)
class Step:
    """What the simulator does with a request: drop it, answer an error, or answer after ``delay``."""

    drop: bool = False
    error: GraphError | OAuthError | None = None
    delay: float = 0.0


PASS = Step()


def scope_of(path: str) -> tuple[str, ...]:
    """The resource Graph throttles a request under: a mailbox, a chat, a channel, else its URL."""
    if m := _MAILBOX.match(path):
        return ("mailbox", m.group(1).lower())
    if m := _CHAT.match(path):
        return ("chat", m.group(1))
    if m := _CHANNEL.match(path):
        return ("channel", m.group(1), m.group(2))
    return ("url", path)


def in_window(elapsed: float, first: float, length: float, every: float) -> bool:
    """Whether ``elapsed`` seconds after start falls in a window of ``length`` that begins at
    ``first`` and repeats every ``every`` seconds (0: once)."""
    if length <= 0 or elapsed < first:
        return False
    since = elapsed - first
    if every > 0:
        since %= every
    return since < length


class FaultMode:
    """Draws the configured faults for each request (see the module's docstring).

    Read by tests and operators: :attr:`windows` (every 429 window opened), :attr:`inside_windows`
    (indexes of requests that arrived inside one: fleetbox should send none, bar those already on
    the wire), :attr:`counts` (faults injected by kind).
    """

    def __init__(
        self,
        settings: SimulatedFaultSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        token_lifetime_seconds: float = 3599,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._started = clock()
        self._random = random.Random(settings.seed)
        self._routes = re.compile(settings.routes) if settings.routes else None
        self._token_lifetime = token_lifetime_seconds
        v = settings.value
        self._rates = [
            (FaultKind.THROTTLED, v("throttle_rate")),
            (FaultKind.UNAVAILABLE, v("unavailable_rate")),
            (FaultKind.GATEWAY_TIMEOUT, v("gateway_timeout_rate")),
            (FaultKind.UNAUTHORIZED, v("unauthorized_rate")),
            (FaultKind.DROPPED, v("drop_rate")),
            (FaultKind.SLOW, v("slow_rate")),
        ]
        self._retry_after = v("retry_after_seconds")
        self._slow = v("slow_seconds")
        self._entra = (v("entra_outage_after_seconds"), v("entra_outage_seconds"), v("entra_outage_every_seconds"))
        every = v("unavailable_burst_every_seconds")
        burst = v("unavailable_burst_seconds")
        self._burst = (every - burst, burst, every)
        self._throttled: dict[tuple[str, ...], float] = {}
        self._entra_down = False
        self.windows: list[ThrottleWindow] = []
        self.inside_windows: list[int] = []
        self.counts: Counter[FaultKind] = Counter()

    def describe(self) -> str:
        """One line naming what is injected (for the log at start)."""
        parts = [f"{kind.value} {rate:.0%}" for kind, rate in self._rates if rate > 0]
        first, length, every = self._entra
        if length > 0:
            again = f", every {every:g} s" if every else ""
            parts.append(f"Entra outage {length:g} s from {first:g} s{again}")
        if self._burst[1] > 0:
            parts.append(f"503 bursts of {self._burst[1]:g} s every {self._burst[2]:g} s")
        named = f"profile {self.settings.profile}" if self.settings.profile != "none" else "the configured rates"
        return f"{named}: " + (", ".join(parts) or "nothing")

    def elapsed(self) -> float:
        """Seconds of the fault clock since the fault mode started."""
        return self._clock() - self._started

    def entra_down(self) -> bool:
        """Whether the token endpoint is inside an outage window now."""
        return in_window(self.elapsed(), *self._entra)

    def burst(self) -> bool:
        """Whether Graph answers every request 503 now."""
        return in_window(self.elapsed(), *self._burst)

    def step(self, request: web.Request, route: str, at: float, index: int, tokens: dict[str, TokenInfo]) -> Step:
        """Decide the fate of the request that arrived at ``at`` (monotonic) as ``requests[index]``."""
        path = request.path
        self._watch_entra(tokens)
        if _TOKEN.search(path) and request.method == "POST":
            if not self._entra_down:
                return PASS
            self.counts[FaultKind.ENTRA_OUTAGE] += 1
            return Step(error=OAuthError(503, "temporarily_unavailable", 90033, "A transient error occurred."))
        if not path.startswith("/v1.0/"):
            return PASS
        scope = scope_of(path)
        until = self._throttled.get(scope)
        if until is not None and at < until:
            # Graph keeps a throttled resource throttled: this request should not have been sent.
            self.counts[FaultKind.INSIDE_WINDOW] += 1
            self.inside_windows.append(index)
            log.warning(
                "simulated Graph: %s %s arrived %.2f s before its Retry-After had passed",
                scope[0],
                "/".join(scope[1:]),
                until - at,
                extra={"event": "graph_simulator_inside_retry_after", "route": route},
            )
            return Step(error=_throttled(until - at))
        if self._routes is not None and not self._routes.search(route):
            return PASS
        if self.burst():
            self.counts[FaultKind.BURST] += 1
            return Step(error=GraphError(503, "serviceNotAvailable", "The service is temporarily unavailable."))
        draw = self._random.random()
        for kind, rate in self._rates:
            if draw >= rate:
                draw -= rate
                continue
            step = self._fault(kind, request, scope, at, index, tokens)
            if step is not None:
                self.counts[kind] += 1
                return step
            break
        return PASS

    def _watch_entra(self, tokens: dict[str, TokenInfo]) -> None:
        down = self.entra_down()
        if down == self._entra_down:
            return
        self._entra_down = down
        if not down:
            log.warning("simulated Entra outage over", extra={"event": "graph_simulator_entra_back"})
            return
        # An outage hurts a client only when it needs a token: every access token ends now (as if
        # their lifetime ran out), so fleetbox has to ask Entra during the outage.
        for info in tokens.values():
            info.expires_at = 0.0
        log.warning(
            "simulated Entra outage: every access token expires and the token endpoint answers 503 for %g s",
            self._entra[1],
            extra={"event": "graph_simulator_entra_outage", "seconds": self._entra[1]},
        )

    def _fault(
        self,
        kind: FaultKind,
        request: web.Request,
        scope: tuple[str, ...],
        at: float,
        index: int,
        tokens: dict[str, TokenInfo],
    ) -> Step | None:
        if kind is FaultKind.THROTTLED:
            end = at + self._retry_after
            self._throttled[scope] = end
            self.windows.append(ThrottleWindow(scope, at, end, index))
            return Step(error=_throttled(self._retry_after))
        if kind is FaultKind.UNAVAILABLE:
            return Step(error=GraphError(503, "serviceNotAvailable", "The service is temporarily unavailable."))
        if kind is FaultKind.GATEWAY_TIMEOUT:
            return Step(error=GraphError(504, "GatewayTimeout", "The gateway did not receive a timely response."))
        if kind is FaultKind.DROPPED:
            return Step(drop=True)
        if kind is FaultKind.SLOW:
            return Step(delay=self._slow)
        # 401: revoke the caller's token early, as Entra may; never a fresh one (see the constant).
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        info = tokens.get(token.strip())
        if info is None or info.expires_at <= time.time():
            return None
        age = self._token_lifetime - (info.expires_at - time.time())
        if age < MIN_REVOKED_TOKEN_AGE_S:
            return None
        info.expires_at = 0.0
        return Step(
            error=GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        )


def _throttled(seconds: float) -> GraphError:
    return GraphError(
        429,
        "TooManyRequests",
        "Too many requests. Please retry after the time given in Retry-After (simulated fault).",
        retry_after=retry_after_header(seconds),
    )
