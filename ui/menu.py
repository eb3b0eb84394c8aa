"""The dashboard's pages and who sees which in the menu. Pages a role may not use stay registered (hidden),
so opening their URL shows the page's own "not for your role" message instead of "Page not found"."""
from __future__ import annotations

from runner.policy.access import Action, Principal

PAGES = {  # url path: (title, icon, the action a role needs to see it in the menu)
    "submit": ("Submit", ":material/add_circle:", Action.submit),
    "live": ("Live", ":material/bolt:", Action.read),
    "job": ("Job", ":material/description:", Action.read),
    "history": ("History", ":material/history:", Action.read),
    "metrics": ("Metrics", ":material/monitoring:", Action.read_all),
    "workers": ("Workers", ":material/dns:", Action.read),
    "settings": ("Settings", ":material/settings:", Action.settings),
    "inbox": ("Inbox", ":material/inbox:", Action.read),
    "profile": ("Profile", ":material/account_circle:", Action.read),
}


def visible(who: Principal) -> list[str]:
    """The pages `who` finds in the menu, in menu order."""
    return [name for name, (_, _, needs) in PAGES.items() if who.can(needs)]
