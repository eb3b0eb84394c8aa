"""Where a notice may go: a URL that the outbound policy lets through, a plain email address.

Checked when a user names one (a profile's webhook URL, a submit's callback_url) so that the mistake is
said at once; the policy is applied again on every delivery (outbound.post), so a host that resolves
elsewhere later gains nothing.
"""
from __future__ import annotations

import re

from ..errors import AccessDenied, InvalidPayload
from ..policy.access import normal_email
from ..web.outbound import Policy, Refused

MAX_URL = 2000
EMAIL = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+$")


async def checked_url(url: str, allow: list[str], what: str) -> str:
    """`url`, trimmed, if the outbound policy (TASKDECK_FETCH_ALLOW: `allow`) would post to it now;
    InvalidPayload naming `what` (the field) and why not."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise InvalidPayload(f"{what} is longer than {MAX_URL} characters")
    try:
        await Policy.allowing(allow).check(url)
    except Refused as e:
        raise InvalidPayload(f"{what} {url!r} is {e} (private, loopback and link-local addresses are refused "
                             "unless TASKDECK_FETCH_ALLOW names the host)") from None
    except OSError:
        raise InvalidPayload(f"{what} {url!r}: its host name does not resolve") from None
    return url


def checked_email(address: str) -> str:
    """`address` in its normal form (policy.access.normal_email) if it is a plain email address."""
    try:
        plain = normal_email(address)
    except AccessDenied as e:
        raise InvalidPayload(str(e)) from None
    if len(plain) > 254 or not EMAIL.match(plain):
        raise InvalidPayload(f"{address!r} is not an email address (name@example.com)")
    return plain
