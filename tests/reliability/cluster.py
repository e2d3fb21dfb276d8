"""PostgreSQL servers of the fault scenarios' own: a primary (and a synchronous standby) made with
the machine's ``initdb``, ``pg_ctl`` and ``pg_basebackup``, on free ports, so a scenario can stop,
restart, exhaust or fail over its database without touching anyone else's.

As root the commands run as the ``postgres`` user (``initdb`` refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


def bindir() -> Path:
    found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


@dataclass
class Cluster:
    """One PostgreSQL server in ``datadir`` on ``port`` (trust authentication, loopback only)."""

    datadir: Path
    port: int
    log: Path

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(bindir() / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w", "-t", "60", *args]
        return subprocess.run(_as_postgres(argv), capture_output=True, text=True, check=check, timeout=120)

    @classmethod
    def create(cls, root: Path, name: str, **settings: str) -> Cluster:
        root.mkdir(parents=True, exist_ok=True)
        _own(root)
        root.chmod(0o755)
        cluster = cls(root / name, _free_port(), root / f"{name}.log")
        subprocess.run(
            _as_postgres(
                [
                    str(bindir() / "initdb"),
                    "-D",
                    str(cluster.datadir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        cluster.configure(
            port=str(cluster.port),
            listen_addresses="'127.0.0.1'",
            unix_socket_directories=f"'{root}'",
            max_connections="60",
            fsync="off",
            full_page_writes="off",
            wal_level="replica",
            max_wal_senders="4",
            hot_standby="on",
            **settings,
        )
        with (cluster.datadir / "pg_hba.conf").open("a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        return cluster

    def configure(self, **settings: str) -> None:
        with (self.datadir / "postgresql.auto.conf").open("a") as f:
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode, check=False)

    def promote(self) -> None:
        self._ctl("promote")

    def standby(self, root: Path, name: str) -> Cluster:
        """A streaming standby of this server (``pg_basebackup -R``), configured but not started."""
        replica = Cluster(root / name, _free_port(), root / f"{name}.log")
        subprocess.run(
            _as_postgres(
                [
                    str(bindir() / "pg_basebackup"),
                    "-D",
                    str(replica.datadir),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                    "-c",
                    "fast",
                ]
            ),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        # Once promoted it has no standby of its own: it must not wait for one on every commit.
        replica.configure(port=str(replica.port), synchronous_standby_names="''")
        return replica

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
