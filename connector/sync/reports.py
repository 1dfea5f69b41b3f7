"""What one sync did, per folder and for the mailbox: the counts `manage.py mailbox sync` prints
and the sync task returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FolderReport:
    name: str
    stored: int = 0
    duplicate: int = 0
    failed: int = 0
    held: int = 0
    skipped: int = 0
    expunged: int = 0
    flags_changed: int = 0
    uidvalidity_reset: bool = False


@dataclass
class SyncReport:
    mailbox_id: int
    # completed | busy | not_active | mail_off | needs_reconnect | error | lease_lost
    outcome: str = "completed"
    error: str = ""
    changes_pushed: int = 0
    folders: list[FolderReport] = field(default_factory=list)
    targeted: bool = False  # only the folders a push named (connector/sync/mailbox.py)
    # Another sync was asked for while this one ran (it found us busy): run one more now.
    requested_meanwhile: bool = False

    @property
    def completed(self) -> bool:
        return self.outcome == "completed"

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.folders)

    def summary(self) -> str:
        if not self.completed:
            return f"{self.outcome}: {self.error}" if self.error else self.outcome
        names = ("stored", "duplicate", "skipped", "failed", "held", "expunged", "flags_changed")
        counts = ", ".join(f"{self.total(n)} {n.replace('_', ' ')}" for n in names)
        return f"completed: {counts}; {self.changes_pushed} changes written to the server"
