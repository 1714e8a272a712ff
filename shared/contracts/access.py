"""People's reads of personal data: who may read a case where, who must say why, and
what a reason may hold. Pure rules, no I/O: the services decide with them before they
show a case, and ``onedoor-audit verify`` judges every recorded read by them again.

The rule, decided once here:

- a clerk reading a case of its own centre (its daily work) and a citizen reading their
  own case need give no reason;
- everyone else who reads a case (an auditor, an admin, a clerk of another centre where
  that is ever allowed) must say why, and the reason is recorded with the read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from shared.contracts.topology import AUDIT, INTAKE

CLERK: Final = "clerk"
CITIZEN: Final = "citizen"  # a person reading their own case (one-time code, no account)

# Who each service shows a case's personal data to. A recorded read by another role is
# a broken authorization (``access_by_wrong_role`` in verify).
READERS: Final[Mapping[str, frozenset[str]]] = {
    INTAKE: frozenset({CLERK, "auditor", "admin", CITIZEN}),
    AUDIT: frozenset({"auditor", "admin"}),
}

# How a reason travels: an HTTP header, UTF-8 percent-encoded when it is not ASCII (a
# header is Latin-1 on the wire); ``--reason`` on the command line.
REASON_HEADER: Final = "Onedoor-Access-Reason"
REASON_MIN: Final = 4
REASON_MAX: Final = 500

# A reason is the reader's words about why, never the person's data: no resident ID,
# credit code or mobile number (the same shapes the logs mask).
_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])|(?<!\d)1[3-9]\d{9}(?!\d)")


@dataclass(frozen=True, slots=True)
class Accessor:
    """Who reads: an account (a token's subject) and its role, or a citizen."""

    name: str
    role: str
    centre: str | None = None


def citizen_name(receipt_no: str) -> str:
    """The name a citizen reads under: their case's receipt number, never an ID number."""
    return f"citizen:{receipt_no}"


def needs_reason(role: str, accessor_centre: str | None, case_centre: str | None) -> bool:
    """Whether this reader must say why they read a case of ``case_centre``."""
    if role == CITIZEN:
        return False
    if role == CLERK:
        return accessor_centre is None or accessor_centre != case_centre
    return True


def reason_problem(reason: str | None, *, required: bool) -> str | None:
    """What is wrong with ``reason`` (a sentence naming the fix), or None."""
    text = (reason or "").strip()
    if not text:
        if required:
            return (
                f"请说明查阅理由 / say why you read this case: the {REASON_HEADER} header "
                "(HTTP) or --reason (onedoor-audit)"
            )
        return None
    if len(text) < REASON_MIN or len(text) > REASON_MAX:
        return f"理由长度不符 / a reason is {REASON_MIN} to {REASON_MAX} characters"
    if _ID_LIKE.search(text):
        return (
            "理由中不得包含证件号码或手机号码 / a reason must not hold an ID number or a "
            "phone number (name the case, not the person)"
        )
    return None


def role_problem(
    service: str,
    role: str,
    accessor_centre: str | None,
    case_centre: str | None,
    *,
    accessor: str | None = None,
    case_receipt: str | None = None,
) -> str | None:
    """Why this read should never have been shown (a sentence), or None. With
    ``accessor`` and ``case_receipt``: a citizen reads only the case of their receipt."""
    readers = READERS.get(service)
    if readers is None:
        return f"{service} shows no personal data"
    if role not in readers:
        return f"{service} shows cases to {', '.join(sorted(readers))}, not to a {role}"
    if role == CLERK and (accessor_centre is None or accessor_centre != case_centre):
        return f"a clerk of {accessor_centre} read a case of centre {case_centre}"
    if role == CITIZEN and case_receipt is not None and accessor != citizen_name(case_receipt):
        return "a citizen read a case that is not theirs"
    return None
