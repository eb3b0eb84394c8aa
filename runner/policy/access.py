"""Who may do what: a principal (user, role, org) derived from a verified identity, and one table of
what each role may do.

Checked in runner, not in pages, so the dashboard, the CLI (`--as EMAIL`), the HTTP API and the
Python API enforce the same rules. Another user's job answers exactly like a missing one.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

from ..errors import AccessDenied
from ..settings import Settings

ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


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


# The one table of what each role may do (README, "Security model", shows it).
ALLOWED: dict[Role, frozenset[Action]] = {
    Role.admin: frozenset(Action),
    Role.staff: frozenset({Action.submit, Action.read, Action.cancel, Action.retry}),
    Role.analyst: frozenset({Action.read, Action.read_all}),
}


@dataclass(frozen=True)
class Principal:
    email: str
    role: Role
    org: str = ""  # "" when the user belongs to no organisation
    token: str = ""  # the id of the API token acting (policy.tokens), if one is: its secret signs callbacks

    def can(self, action: Action) -> bool:
        return action in ALLOWED[self.role]

    def require(self, action: Action) -> None:
        if not self.can(action):
            raise AccessDenied(f"{self.email} may not {action} (role {self.role}); ask an admin")

    def sees(self, owner: str) -> bool:
        return self.can(Action.read_all) or owner == self.email

    def acts_on(self, owner: str) -> bool:
        return self.can(Action.act_all) or owner == self.email

    def acts_for_org(self, org: str) -> bool:
        return self.can(Action.act_all) or org == self.org


def normal_email(text: str) -> str:
    """The one form of an email address used everywhere (NFKC, case-folded, trimmed).

    An address whose normal form differs from its ASCII-lowercase form (a Kelvin sign that folds
    into `k`, a `ß` that folds into `ss`) is refused: it would match patterns and limits written
    for another address."""
    plain = text.strip()
    folded = unicodedata.normalize("NFKC", plain).casefold()
    if folded != plain.translate(ASCII_LOWER):
        raise AccessDenied(f"{plain!r} is not a plain address (it changes under Unicode case folding); "
                           "use the address spelled in plain letters")
    return folded


def matches(email: str, pattern: str) -> bool:
    return fnmatchcase(email, pattern.strip().translate(ASCII_LOWER))


def listed_role(settings: Settings, email: str) -> Role | None:
    """The role the allow-list gives `email` (first matching pattern), or None."""
    for pattern, role in settings.roles.items():
        if matches(email, pattern):
            return Role(role)
    return None


def org_of(settings: Settings, email: str, claimed: str | None = None) -> str:
    """`email`'s organisation: TASKDECK_ORGS's first matching pattern, else what the verified identity
    claims (an OIDC claim, a token's org), else none."""
    for pattern, org in settings.orgs.items():
        if matches(email, pattern):
            return org
    return (claimed or "").strip()


def capped(granted: Role, listed: Role) -> Role:
    """The role of a credential granted `granted` for a user the allow-list now gives `listed`: the
    lesser of the two; AccessDenied when neither holds the other (staff and analyst)."""
    if ALLOWED[granted] <= ALLOWED[listed]:
        return granted
    if ALLOWED[listed] <= ALLOWED[granted]:
        return listed
    raise AccessDenied(f"this credential's role {granted} does not fit the role {listed} the allow-list "
                       "gives its user now; ask an admin for a new one")


def principal(settings: Settings, email: str | None, *, cap: Role | None = None,
              org: str | None = None) -> Principal:
    """The acting user, from a verified identity: the local admin when `email` is None, else the role
    the allow-list gives the email (capped by `cap`, a token's role) and the org TASKDECK_ORGS gives it
    (or `org`, what the identity itself claims). AccessDenied for an email the allow-list does not name."""
    local = normal_email(settings.local_user)
    email = local if email is None else normal_email(email)
    role = listed_role(settings, email)
    if role is None and email == local:
        role = Role.admin  # the local admin, unless the allow-list names that address itself
    if role is None:
        raise AccessDenied(f"{email or 'an empty address'} is not on the allow-list (TASKDECK_ROLES); "
                           "ask an admin for access")
    return Principal(email, capped(cap, role) if cap else role, org_of(settings, email, org))
