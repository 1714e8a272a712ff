from __future__ import annotations

import logging

import pytest
import structlog

from shared.platform.logs import configure_logging, mask_text

pytestmark = pytest.mark.unit

RESIDENT_ID = "11010519491231002X"
PHONE = "13800138000"


def test_mask_text_masks_both_kinds() -> None:
    masked = mask_text(f"id={RESIDENT_ID} tel {PHONE}.")
    assert RESIDENT_ID not in masked
    assert PHONE not in masked
    assert masked == "id=110***********002X tel 138****8000."


def test_mask_text_leaves_other_numbers() -> None:
    text = "receipt C01-20261127-0001 offset 123456 uuid 5f1c"
    assert mask_text(text) == text


def test_no_personal_data_in_structlog_or_stdlib_output(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure_logging("test", json=True)
    with structlog.contextvars.bound_contextvars(case_id="c-1"):
        log.info("case accepted", applicant={"id_number": RESIDENT_ID, "phone": PHONE})
        log.info(f"free text with {RESIDENT_ID} and {PHONE}")
        log.info("as a number", phone=int(PHONE))
        logging.getLogger("some.library").warning("library line about %s / %s", RESIDENT_ID, PHONE)
        try:
            int(f"bad id {RESIDENT_ID}")
        except ValueError:
            log.exception("failed")
    err = capsys.readouterr().err
    assert RESIDENT_ID not in err
    assert PHONE not in err
    assert err.count("110***********002X") >= 4
    assert '"case_id": "c-1"' in err
