"""Who may do what: roles from an allow-list in settings, and ownership of jobs.

Checked in runner, not in pages, so the dashboard, the CLI (`--as EMAIL`) and the Python API
enforce the same rules. Another user's job answers exactly like a missing one.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatch

from .errors import AccessDenied
from .settings import Settings


class Role(StrEnum):
    admin = "admin"
    staff = "staff"
    analyst = "analyst"


class Action(StrEnum):
    submit = "submit jobs"
    read = "read jobs"
    read_all = "read everyone's jobs"
    act_all = "act on everyone's jobs"
    cancel = "cancel jobs"
    retry = "retry jobs"
    audit = "read the audit log"
    settings = "change settings"


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.admin: frozenset(Action),
    Role.staff: frozenset({Action.submit, Action.read, Action.cancel, Action.retry}),
    Role.analyst: frozenset({Action.read, Action.read_all}),
}


@dataclass(frozen=True)
class Principal:
    email: str
    role: Role

    def can(self, action: Action) -> bool:
        return action in ALLOWED[self.role]

    def require(self, action: Action) -> None:
        if not self.can(action):
            raise AccessDenied(f"{self.email} may not {action} (role {self.role}); ask an admin")

    def sees(self, owner: str) -> bool:
        return self.can(Action.read_all) or owner == self.email

    def acts_on(self, owner: str) -> bool:
        return self.can(Action.act_all) or owner == self.email


def principal(settings: Settings, email: str | None) -> Principal:
    """The acting user: the local admin by default, else the role the allow-list gives the email."""
    email = (email or settings.local_user).strip().lower()
    if email == settings.local_user:
        return Principal(email, Role.admin)
    for pattern, role in settings.roles.items():
        if fnmatch(email, pattern.lower()):
            return Principal(email, Role(role))
    raise AccessDenied(f"{email} is not on the allow-list (TASKDECK_ROLES); ask an admin for access")
