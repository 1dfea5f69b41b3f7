"""The faults bench/soak.py injects, by area (docs/reliability.md I-09). Each injector does one
fault and says what it did; a fault that lasts a while (a refusing or dying SMTP server, a
silent proxy, a stopped SMTP server) leaves an undo that the soak's loop runs when it is due.

- sync: the proxy cuts every IMAP connection (the gateway's as well: every IMAP byte of the
  workers and the gateway passes the proxy); a worker is SIGKILLed; Redis or PostgreSQL is
  restarted; a folder's UIDVALIDITY is reset.
- push: the gateway is SIGKILLed (and started again, as a supervisor would); Dovecot says BYE to
  every session (doveadm kick); the proxy lets each new IMAP connection go silent once it is in
  IDLE, for 20-60 s (the connections cut first, so the gateway's reconnect into it); Dovecot is
  restarted under the proxy (on new ports: the proxy is pointed at them).
- sending: the SMTP server answers DATA with 451 for 10-30 s; it dies at DATA, before its
  verdict, or right after its 250, for 5-15 s (tests/servers/smtp.py modes drop_at_data, drop,
  accept_then_drop); it is stopped for 3-15 s and started again on its port; a worker is
  SIGKILLed while an entry is "sending" (the server holds its verdict back 4 s meanwhile).
- filing: a worker is SIGKILLed while it holds a relay.file_messages task.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

AREAS = {
    "sync": ("proxy_cut", "worker_kill", "redis_restart", "postgres_restart", "uidvalidity_reset"),
    "push": ("gateway_kill", "dovecot_kick", "proxy_mute", "dovecot_restart"),
    "sending": ("smtp_refuse", "smtp_die", "smtp_restart", "worker_kill_sending"),
    "filing": ("worker_kill_filing",),
}
FAULTS = tuple(kind for kinds in AREAS.values() for kind in kinds)
AREA_OF = {kind: area for area, kinds in AREAS.items() for kind in kinds}
AIM_WAIT = 10.0  # seconds an aimed kill waits for its moment


class Missed(Exception):
    """An aimed fault found nothing to aim at: not counted as injected."""


def unfinished_tasks(log: str, task: str) -> set[str]:
    """Ids of `task` a Celery worker's log shows received and not yet finished."""
    name = re.escape(task)
    received = set(re.findall(rf"Task {name}\[([0-9a-f-]+)\] received", log))
    done = set(re.findall(rf"Task {name}\[([0-9a-f-]+)\] (?:succeeded|failed|raised|retry)", log))
    return received - done


class Injector:
    def __init__(self, soak):
        self.soak = soak
        self.rng = soak.rng
        self.undos: list[tuple[float, Callable[[], None]]] = []

    def inject(self, kind: str) -> str:
        return getattr(self, kind)()

    def later(self, seconds: float, undo: Callable[[], None]) -> None:
        self.undos.append((time.monotonic() + seconds, undo))

    def run_due(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        due = [u for u in self.undos if everything or u[0] <= now]
        self.undos = [u for u in self.undos if u not in due]
        for _at, undo in sorted(due, key=lambda u: u[0]):
            undo()

    # --- sync ------------------------------------------------------------------------------
    def proxy_cut(self) -> str:
        self.soak.proxy.cut_all()
        return "cut every IMAP connection (workers' and gateway's)"

    def _kill_worker(self, name: str) -> None:
        self.soak.celery.kill(name)
        self.soak.start_worker(name)

    def worker_kill(self) -> str:
        name = self.rng.choice(self.soak.worker_names())
        self._kill_worker(name)
        return f"SIGKILL {name}, started again"

    def redis_restart(self) -> str:
        self.soak.redis.restart()
        return "redis restarted"

    def postgres_restart(self) -> str:
        self.soak.pg.restart()
        return "postgresql restarted"

    def uidvalidity_reset(self) -> str:
        user = self.rng.choice(self.soak.users)
        new = self.soak.dovecot.reset_uidvalidity(user, "INBOX")
        return f"UIDVALIDITY of {user.login} INBOX is now {new}"

    # --- push ------------------------------------------------------------------------------
    def gateway_kill(self) -> str:
        self.soak.celery.kill("gateway")
        self.soak.start_gateway()
        return "SIGKILL the push gateway, started again"

    def dovecot_kick(self) -> str:
        from tests.servers.dovecot import DoveadmError

        kicked = 0
        for user in self.soak.users:
            try:
                self.soak.dovecot.kick(user.login)
                kicked += 1
            except DoveadmError:  # exit 68: the user has no session at this moment
                pass
        if not kicked:
            raise Missed("no user had a session")
        return f"Dovecot said BYE to the sessions of {kicked} users (kick)"

    def proxy_mute(self) -> str:
        proxy = self.soak.proxy
        seconds = self.rng.uniform(20, 60)
        proxy.mute_after(b"+ idling\r\n")
        proxy.cut_all()
        self.later(seconds, proxy.normal)
        return f"proxy silent after '+ idling' on new connections for {seconds:.0f} s"

    def dovecot_restart(self) -> str:
        dovecot = self.soak.dovecot
        dovecot.stop()
        dovecot.start()
        self.soak.proxy.target = (dovecot.host, dovecot.port)
        return f"Dovecot restarted (now on port {dovecot.port} behind the proxy)"

    # --- sending ---------------------------------------------------------------------------
    def _smtp_mode(self, mode: str, seconds: float) -> None:
        smtp = self.soak.smtp
        smtp.mode = mode

        def back():
            smtp.mode = "accept"

        self.later(seconds, back)

    def smtp_refuse(self) -> str:
        seconds = self.rng.uniform(10, 30)
        self._smtp_mode("tempfail", seconds)
        return f"SMTP server answers DATA with 451 for {seconds:.0f} s"

    def smtp_die(self) -> str:
        mode = self.rng.choice(("drop_at_data", "drop", "accept_then_drop"))
        seconds = self.rng.uniform(5, 15)
        self._smtp_mode(mode, seconds)
        return f"SMTP server cuts the connection ({mode}) for {seconds:.0f} s"

    def smtp_restart(self) -> str:
        if self.soak.smtp_controller is None:
            raise Missed("the SMTP server is stopped already")
        seconds = self.rng.uniform(3, 15)
        self.soak.stop_smtp()
        self.later(seconds, self.soak.start_smtp)
        return f"SMTP server stopped for {seconds:.0f} s, then started again"

    def _aimed_kill(self, task: str, ready: Callable[[], bool]) -> str | None:
        """Kill the worker holding `task` once `ready()`; None if none did within AIM_WAIT."""
        deadline = time.monotonic() + AIM_WAIT
        while time.monotonic() < deadline:
            if ready():
                for name in self.soak.worker_names():
                    if unfinished_tasks(self.soak.worker_log(name), task):
                        self._kill_worker(name)
                        return name
            time.sleep(0.02)
        return None

    def worker_kill_sending(self) -> str:
        from inbox.models import OutboxEntry

        smtp = self.soak.smtp
        smtp.delay = 4.0
        try:
            self.soak.send_one()
            name = self._aimed_kill(
                "relay.send_outbox_entry",
                lambda: self.soak.retry_db(
                    lambda: OutboxEntry.objects.filter(state=OutboxEntry.State.SENDING).exists()
                ),
            )
        finally:
            smtp.delay = 0.0
        if name is None:
            raise Missed(f"no entry was sending within {AIM_WAIT:.0f} s")
        return f"SIGKILL {name} while an entry was sending, started again"

    # --- filing ----------------------------------------------------------------------------
    def worker_kill_filing(self) -> str:
        self.soak.deliver_one()
        name = self._aimed_kill("relay.file_messages", lambda: True)
        if name is None:
            raise Missed(f"no filing task in flight within {AIM_WAIT:.0f} s")
        return f"SIGKILL {name} while it held a filing task, started again"
