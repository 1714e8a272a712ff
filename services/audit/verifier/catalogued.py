"""What the catalogue and the topology say of a case's records, worked out once per item
or department rather than once per case: the judge compares each case with these."""

from __future__ import annotations

from typing import NamedTuple

from shared.contracts.catalogue import Item
from shared.contracts.topology import dept_outcomes, dept_tasks


class Slip(NamedTuple):
    """What a CaseRouted must say of an item that it routes, as ``facts.Routed`` says it."""

    steps: tuple[tuple[int, str, str], ...]  # (index, department, action)
    settle_on_spot: bool
    applicant_kind: str


# id(item) -> (the item, its slip): the item is kept, so its id is never another's.
_SLIPS: dict[int, tuple[Item, Slip]] = {}


def slip_of(item: Item) -> Slip:
    found = _SLIPS.get(id(item))
    if found is not None and found[0] is item:
        return found[1]
    if len(_SLIPS) >= 4096:
        _SLIPS.clear()  # catalogues come and go (tests); a replay's items stay few
    slip = Slip(
        tuple((i, s.department, s.action) for i, s in enumerate(item.steps)),
        item.settle_on_spot,
        item.applicant_kind,
    )
    _SLIPS[id(item)] = (item, slip)
    return slip


_TASKS: dict[str, str] = {}
_OUTCOMES: dict[str, str] = {}


def tasks_topic(department: str) -> str:
    """``dept_tasks(department)``, remembered."""
    found = _TASKS.get(department)
    if found is None:
        found = _TASKS[department] = dept_tasks(department)
    return found


def outcomes_topic(department: str) -> str:
    """``dept_outcomes(department)``, remembered."""
    found = _OUTCOMES.get(department)
    if found is None:
        found = _OUTCOMES[department] = dept_outcomes(department)
    return found
