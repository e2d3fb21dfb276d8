"""The embedded PostgreSQL used when no database is configured (server binaries from ``pgserver``).

What ``<data_dir>`` holds for it:

- ``pgdata/``: the PostgreSQL cluster (``initdb`` with trust authentication for local connections
  only: the server listens on no TCP address, only on a unix socket in ``pgdata/``, or in
  ``$TMPDIR/fleetbox-pg-<hash>/`` when that path is too long for a socket), its log ``pgdata/log``
  and ``postmaster.pid``. Created 0700.
- ``embedded.lock``: serialises starting and stopping between fleetbox processes.
- ``embedded-holders.json``: the fleetbox processes using the server now. The server is started
  by the first of them and stopped when the last one exits (``fleetbox run`` and one-shot
  commands alike); a holder that died is dropped at the next start or exit.
- ``embedded-pinned``: present after ``fleetbox db start``: the server then outlives every
  command until ``fleetbox db stop``.

As root, PostgreSQL refuses to run, so the server runs as the system user ``fleetbox-pg``
(created if missing with ``useradd --system``, no home, no login shell) and ``pgdata`` belongs to
it (a ``pgdata`` that already belongs to another user, such as ``pgserver`` from older versions,
keeps running as that user). Nothing else changes ownership or mode: ``<data_dir>`` is made 0711
(others may traverse it, never list it) and every directory above it must already be traversable
by that user, or the start fails saying which one is not (``/var/lib/fleetbox``, the default as
root, is).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import re
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetbox.errors import DatabaseError

log = logging.getLogger("fleetbox.embedded")

#: The system user the server runs as when fleetbox runs as root.
ROOT_SERVER_USER = "fleetbox-pg"
#: How often ``fleetbox run`` checks that its embedded server is alive.
WATCH_SECONDS = 2.0
_MAX_SOCKET_PATH = 100  # bytes; a unix socket path may have at most 107
_START_TIMEOUT = 60.0
#: The timestamp and pid PostgreSQL puts before each log line.
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ \[\d+\] ")


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What ``fleetbox db status`` reports."""

    pgdata: Path
    initialised: bool
    pid: int | None
    dsn: str | None
    pinned: bool
    holders: tuple[int, ...]

    @property
    def running(self) -> bool:
        return self.pid is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (the server as fleetbox-pg)
    return True


def _bin(name: str) -> str:
    with warnings.catch_warnings():
        # pgserver's package import warns when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        # Imported here: only the embedded default needs the server binaries.
        from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class EmbeddedPostgres:
    """The private server under ``data_dir``; all methods block (call them in a thread)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self._as_root = os.geteuid() == 0

    # -- files ----------------------------------------------------------------------------------

    @property
    def _holders_file(self) -> Path:
        return self.data_dir / "embedded-holders.json"

    @property
    def _pin_file(self) -> Path:
        return self.data_dir / "embedded-pinned"

    def _holders(self) -> list[int]:
        try:
            found = json.loads(self._holders_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return []
        if not isinstance(found, list):
            return []
        # Only real pids: kill(0) or kill(-1) would ask about process groups, not a holder.
        return [p for p in found if type(p) is int and p > 0 and _alive(p)]

    def _write_holders(self, pids: list[int]) -> None:
        fd = os.open(self._holders_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(sorted(set(pids)), f)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_data_dir()
        fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_data_dir(self) -> None:
        mode = 0o711 if self._as_root else 0o700
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=mode)
            if self._as_root:
                self.data_dir.chmod(mode)  # the server's user must reach pgdata; nobody lists the rest
        except OSError as exc:
            raise DatabaseError(f"cannot create the data directory {self.data_dir}: {exc.strerror}") from None

    # -- the server -----------------------------------------------------------------------------

    def _server_user(self) -> str | None:
        """As root: the unprivileged user that runs the server (created if missing)."""
        if not self._as_root:
            return None
        with contextlib.suppress(FileNotFoundError, KeyError):
            # A cluster made before (by another fleetbox version, or by hand) keeps its owner.
            owner = self.pgdata.stat().st_uid
            if owner != 0:
                return pwd.getpwuid(owner).pw_name
        try:
            pwd.getpwnam(ROOT_SERVER_USER)
        except KeyError:
            shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
            try:
                subprocess.run(
                    [
                        "useradd",
                        "--system",
                        "--no-create-home",
                        "--home-dir",
                        "/nonexistent",
                        "--shell",
                        shell,
                        ROOT_SERVER_USER,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise DatabaseError(
                    f"as root the embedded PostgreSQL runs as the system user {ROOT_SERVER_USER}, "
                    f"which could not be created ({exc}); create it, or run fleetbox as an ordinary user"
                ) from None
        uid = pwd.getpwnam(ROOT_SERVER_USER).pw_uid
        for parent in [self.data_dir, *self.data_dir.parents]:
            st = parent.stat()
            if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
                raise DatabaseError(
                    f"as root the embedded PostgreSQL runs as the system user {ROOT_SERVER_USER}, which cannot "
                    f"reach {parent} (mode {stat.S_IMODE(st.st_mode):04o}): choose a --data-dir it can reach "
                    "(such as /var/lib/fleetbox), or run fleetbox as an ordinary user"
                )
        return ROOT_SERVER_USER

    def _run(self, args: list[str], user: str | None, what: str) -> None:
        try:
            subprocess.run(
                args,
                user=user,
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=_START_TIMEOUT,
            )
        except subprocess.CalledProcessError as exc:
            reason = self._reason(exc.stderr)
            raise DatabaseError(f"could not {what} the embedded PostgreSQL in {self.pgdata}: {reason}") from None
        except subprocess.TimeoutExpired:
            reason = self._reason("")
            raise DatabaseError(f"the embedded PostgreSQL in {self.pgdata} did not {what} in time: {reason}") from None
        except OSError as exc:
            raise DatabaseError(f"could not {what} the embedded PostgreSQL in {self.pgdata}: {exc}") from None

    def _reason(self, stderr: str) -> str:
        """The server's own explanation: the last FATAL or PANIC line of the tool's output or the
        server log, with the line before it when that says what was wrong (PostgreSQL logs the
        bad setting, then "configuration file contains errors")."""
        lines = [_LOG_PREFIX.sub("", line).strip() for line in stderr.splitlines()]
        with contextlib.suppress(OSError):
            tail = (self.pgdata / "log").read_text(encoding="utf-8", errors="replace").splitlines()[-50:]
            lines += [_LOG_PREFIX.sub("", line).strip() for line in tail]
        lines = [line for line in lines if line]
        fatal = [i for i, line in enumerate(lines) if line.startswith(("FATAL", "PANIC")) or "error" in line.lower()]
        if not fatal:
            return lines[-1][:300] if lines else f"no reason given (see {self.pgdata / 'log'})"
        i = fatal[-1]
        reason = lines[i]
        if i > 0 and lines[i - 1].startswith("LOG:") and not lines[i - 1].startswith("LOG:  database system"):
            reason = f"{lines[i - 1].removeprefix('LOG:').strip()} ({reason})"
        return reason[:400]

    def _postmaster(self) -> tuple[int, str] | None:
        """The running server's pid and DSN, from ``postmaster.pid`` (None: not running)."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, PermissionError, UnicodeDecodeError):
            return None
        if len(lines) < 8 or not lines[0].strip().isdigit() or lines[7].strip() != "ready":
            return None
        pid = int(lines[0])
        if not _alive(pid):
            return None
        return pid, f"postgresql://postgres@/postgres?host={lines[4].strip()}"

    def _socket_dir(self, user: str | None) -> Path:
        if len(os.fsencode(self.pgdata / ".s.PGSQL.5432")) <= _MAX_SOCKET_PATH:
            return self.pgdata
        digest = hashlib.sha256(os.fsencode(self.pgdata)).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"fleetbox-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def _start(self) -> tuple[int, str]:
        user = self._server_user()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                [
                    _bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--auth-local=trust",
                    "--encoding=utf8",
                    "-U",
                    "postgres",
                ],
                user,
                "initialise",
            )
        socket_dir = self._socket_dir(user)
        self._run(
            [
                _bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                str(int(_START_TIMEOUT)),
                "-l",
                str(self.pgdata / "log"),
                "-o",
                f'-h "" -k "{socket_dir}"',
                "start",
            ],
            user,
            "start",
        )
        found = self._postmaster()
        if found is None:
            raise DatabaseError(f"the embedded PostgreSQL in {self.pgdata} did not start: {self._reason('')}")
        return found

    def _stop(self) -> None:
        if self._postmaster() is None:
            return
        self._run([_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-m", "fast", "stop"], self._server_user(), "stop")

    # -- the operations -------------------------------------------------------------------------

    def acquire(self) -> str:
        """Start the server unless it runs, count this process as a user of it; its DSN."""
        with self._locked():
            found = self._postmaster() or self._start()
            self._write_holders([*self._holders(), os.getpid()])
            return found[1]

    def release(self) -> bool:
        """This process no longer uses the server: stop it if nobody else does and it is not
        pinned. Whether it was stopped."""
        with self._locked():
            holders = [p for p in self._holders() if p != os.getpid()]
            self._write_holders(holders)
            if holders or self._pin_file.exists():
                return False
            self._stop()
            return True

    def restart_if_dead(self) -> int | None:
        """Start the server again if it is not running; the new server's pid (None: it was up)."""
        with self._locked():
            if self._postmaster() is not None:
                return None
            return self._start()[0]

    def pin(self) -> str:
        """``fleetbox db start``: start the server and keep it running after every command."""
        with self._locked():
            found = self._postmaster() or self._start()
            self._pin_file.touch(mode=0o600)
            return found[1]

    def unpin(self) -> tuple[bool, tuple[int, ...]]:
        """``fleetbox db stop``: stop the server unless processes still use it (it then stops
        when the last one exits). Whether it stopped, and the processes still using it."""
        with self._locked():
            self._pin_file.unlink(missing_ok=True)
            holders = tuple(p for p in self._holders() if p != os.getpid())
            if holders:
                return False, holders
            self._stop()
            return True, ()

    def status(self) -> ServerStatus:
        """Whether the server runs, its DSN, and who holds it."""
        found = self._postmaster()
        return ServerStatus(
            pgdata=self.pgdata,
            initialised=(self.pgdata / "PG_VERSION").exists(),
            pid=found[0] if found else None,
            dsn=found[1] if found else None,
            pinned=self._pin_file.exists(),
            holders=tuple(self._holders()),
        )

    async def watch(self, stopping: asyncio.Event, interval: float = WATCH_SECONDS) -> None:
        """Restart the server whenever it is found dead, until ``stopping`` is set."""
        delay = interval
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            if stopping.is_set():
                return
            try:
                pid = await asyncio.to_thread(self.restart_if_dead)
            except DatabaseError as exc:
                delay = min(delay * 2, 60.0)
                log.error(
                    "the embedded PostgreSQL is down and could not be restarted; trying again",
                    extra={"event": "embedded_database_restart_failed", "error": str(exc), "retry_seconds": delay},
                )
                continue
            delay = interval
            if pid is not None:
                log.warning(
                    "the embedded PostgreSQL had stopped; restarted it",
                    extra={"event": "embedded_database_restarted", "pid": pid, "pgdata": str(self.pgdata)},
                )
