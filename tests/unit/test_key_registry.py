"""The key registry as configuration (shared.messaging.keyring): generation, rotation,
validity periods, and what a service refuses at start-up."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.messaging.keyring import (
    REGISTRY_FILE,
    SigningKeyError,
    generate,
    main,
    read_registry,
)
from shared.messaging.signing import PublicKeys, Signer
from shared.platform.runtime import load_keys
from shared.platform.secret_files import refused
from shared.platform.settings import Settings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_generate_writes_a_0600_private_key_and_registers_its_public_key(tmp_path: Path) -> None:
    path = generate(tmp_path, "router", now=T0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = read_registry(tmp_path)["router"]
    signer = Signer.load(tmp_path, "router")
    assert [e.key for e in entries] == [signer.public_key()]
    assert (entries[0].valid_from, entries[0].valid_until) == (T0, None)
    document = json.loads((tmp_path / REGISTRY_FILE).read_text())
    assert bytes(signer.key).hex() not in json.dumps(document)  # public keys only
    # Again: the key is kept, the registry unchanged.
    generate(tmp_path, "router", now=T0 + timedelta(days=1))
    assert read_registry(tmp_path)["router"] == entries
    assert not list(tmp_path.glob("*.pub"))


def test_rotation_keeps_old_signatures_valid_and_an_expired_key_verifies_nothing_new(
    tmp_path: Path,
) -> None:
    generate(tmp_path, "router", now=T0)
    old = Signer.load(tmp_path, "router")
    before = old.sign(b"signed before the rotation")
    rotated_at = T0 + timedelta(days=30)
    generate(tmp_path, "router", rotate=True, grace=timedelta(hours=1), now=rotated_at)
    new = Signer.load(tmp_path, "router")
    assert new.public_key() != old.public_key()
    keys = PublicKeys.load(tmp_path)
    # What the old key signed while it was valid still verifies.
    assert keys.verify("router", b"signed before the rotation", before, T0 + timedelta(days=1))
    # Within the grace period a replica not restarted yet is still trusted.
    late = old.sign(b"late")
    assert keys.verify("router", b"late", late, rotated_at + timedelta(minutes=30))
    # After it, the old key verifies nothing new: a record it signs is refused.
    expired_at = rotated_at + timedelta(hours=2)
    assert not keys.verify("router", b"late", late, expired_at)
    assert keys.verify("router", b"new", new.sign(b"new"), expired_at)
    # And the new key verifies nothing from before it existed.
    assert not keys.verify("router", b"new", new.sign(b"new"), T0 + timedelta(days=1))
    entries = read_registry(tmp_path)["router"]
    assert [(e.valid_from, e.valid_until) for e in entries] == [
        (T0, rotated_at + timedelta(hours=1)),
        (rotated_at, None),
    ]


def test_a_batch_signature_follows_the_same_validity(tmp_path: Path) -> None:
    generate(tmp_path, "router", now=T0)
    old = Signer.load(tmp_path, "router")
    values = [b"a", b"b", b"c"]
    headers = old.sign_batch(values)
    generate(tmp_path, "router", rotate=True, grace=timedelta(0), now=T0 + timedelta(days=1))
    keys = PublicKeys.load(tmp_path)
    assert all(
        keys.verify("router", v, h, T0 + timedelta(hours=1))
        for v, h in zip(values, headers, strict=True)
    )
    assert not any(
        keys.verify("router", v, h, T0 + timedelta(days=2))
        for v, h in zip(values, headers, strict=True)
    )


def test_a_missing_key_is_an_error_with_the_fix_and_is_never_created(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="run onedoor-keys generate router"):
        Signer.load(tmp_path, "router")
    assert not (tmp_path / "router.key").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_private_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = generate(tmp_path, "router")
    os.chmod(path, mode)
    if os.geteuid() == 0:  # owned by a service's user, as on a host (root may differ)
        os.chown(path, 10001, 10001)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        Signer.load(tmp_path, "router")


@pytest.mark.parametrize(
    ("mode", "owner", "too_open"),
    [
        (0o600, 10001, False),
        (0o400, 10001, False),
        (0o640, 10001, True),
        (0o440, 10001, True),
        # A Kubernetes Secret mounted for a non-root pod: root's file, the fsGroup reads.
        (0o440, 0, False),
        (0o640, 0, False),
        (0o660, 0, True),
        (0o644, 0, True),
        (0o604, 0, True),
    ],
)
def test_which_key_file_modes_are_too_open(mode: int, owner: int, too_open: bool) -> None:
    assert refused(mode, owner) is too_open


def test_start_up_refuses_missing_keys_and_a_key_the_registry_does_not_list(
    tmp_path: Path,
) -> None:
    settings = Settings(keys_dir=tmp_path)
    with pytest.raises(SigningKeyError, match="onedoor-keys generate router"):
        load_keys(settings, "router")
    generate(tmp_path, "router")
    signer, keys = load_keys(settings, "router")
    assert keys.raw("router") == signer.public_key()
    # A private key swapped in by hand, not in the registry: refused.
    other = tmp_path / "elsewhere"
    generate(other, "router")
    with pytest.raises(SigningKeyError, match="has no key of router valid now"):
        load_keys(Settings(keys_dir=tmp_path, signing_key_file=other / "router.key"), "router")
    # The key file setting names the service's own key.
    shared = Settings(keys_dir=other, signing_key_file=other / "router.key")
    assert load_keys(shared, "router")[0].public_key() == Signer.load(other, "router").public_key()


def test_a_registry_elsewhere_is_read_from_its_setting(tmp_path: Path) -> None:
    registry = tmp_path / "conf" / "trusted.json"
    generate(tmp_path / "keys", "router", registry=registry)
    settings = Settings(keys_dir=tmp_path / "keys", key_registry=registry)
    assert load_keys(settings, "router")[1].signers() == {"router"}
    assert not (tmp_path / "keys" / REGISTRY_FILE).exists()


def test_the_cli_generates_and_rotates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "router", "operator", "--dir", str(tmp_path)]) == 0
    assert read_registry(tmp_path).keys() == {"router", "operator"}
    first = Signer.load(tmp_path, "router").public_key()
    assert main(["rotate", "router", "--dir", str(tmp_path), "--grace-seconds", "0"]) == 0
    entries = read_registry(tmp_path)["router"]
    assert [e.key for e in entries][:1] == [first]
    assert [e.valid_until is None for e in entries] == [False, True]
    out = capsys.readouterr().out
    assert bytes(Signer.load(tmp_path, "router").key).hex() not in out


def test_verifiers_see_a_key_added_after_they_loaded_the_registry(tmp_path: Path) -> None:
    generate(tmp_path, "router")
    keys = PublicKeys.load(tmp_path)
    assert "parks" not in keys.signers()
    generate(tmp_path, "parks")
    assert keys.refresh()
    assert "parks" in keys.signers()
    assert not keys.refresh()  # unchanged since
