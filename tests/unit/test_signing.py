"""Ed25519 signatures, alone and over Merkle batches (shared.messaging.signing)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from shared.messaging.keyring import generate_all
from shared.messaging.signing import (
    BATCH_LEAVES,
    BATCH_PREFIX,
    PublicKeys,
    Signer,
    merkle_leaf,
    merkle_root,
    merkle_tree,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    generate_all(tmp_path, ["router", "intake"])
    return tmp_path


def values(n: int) -> list[bytes]:
    return [f'{{"event":{i},"pad":"{"x" * i}"}}'.encode() for i in range(n)]


@pytest.mark.parametrize("size", range(1, 20))
def test_every_proof_leads_to_the_root_and_no_other_leaf_does(size: int) -> None:
    leaves = [merkle_leaf(v) for v in values(size)]
    root, paths = merkle_tree(leaves)
    for index, path in enumerate(paths):
        assert merkle_root(index, size, leaves[index], path) == root
        if size > 1:
            other = leaves[(index + 1) % size]
            assert merkle_root(index, size, other, path) != root
            # The same proof does not fit another position. (It may fit another tree
            # size, which is why a batch signature signs the size with the root.)
            assert merkle_root((index + 1) % size, size, leaves[index], path) != root


def test_the_tree_hashes_as_rfc_9162_says() -> None:
    a, b, c = (merkle_leaf(v) for v in (b"a", b"b", b"c"))

    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    assert merkle_leaf(b"a") == hashlib.sha256(b"\x00a").digest()
    root, paths = merkle_tree([a, b, c])
    assert root == node(node(a, b), c)
    assert paths == [[b, c], [a, c], [node(a, b)]]


def test_a_proof_of_the_wrong_length_or_position_proves_nothing() -> None:
    leaves = [merkle_leaf(v) for v in values(5)]
    root, paths = merkle_tree(leaves)
    assert merkle_root(0, 5, leaves[0], paths[0][:-1]) is None
    assert merkle_root(0, 5, leaves[0], [*paths[0], root]) is None
    assert merkle_root(5, 5, leaves[0], paths[0]) is None
    assert merkle_root(-1, 5, leaves[0], paths[0]) is None


@pytest.mark.parametrize("count", [1, 2, 3, BATCH_LEAVES, BATCH_LEAVES + 1, 3 * BATCH_LEAVES + 5])
def test_each_record_of_a_batch_verifies_alone(keys_dir: Path, count: int) -> None:
    signer = Signer.load(keys_dir, "router")
    batch = values(count)
    signatures = signer.sign_batch(batch)
    keys = PublicKeys.load(keys_dir)
    assert len(signatures) == count
    for value, signature in zip(batch, signatures, strict=True):
        assert keys.verify("router", value, signature)
        assert not keys.verify("router", value + b" ", signature)
        assert not keys.verify("intake", value, signature)  # another service's key
    # A value alone keeps the plain signature; batches are split into even trees.
    assert signatures[0].startswith(BATCH_PREFIX) == (count > 1)
    sizes = {int(s.split(".")[2]) for s in signatures if s.startswith(BATCH_PREFIX)}
    assert all(size <= BATCH_LEAVES for size in sizes)
    assert max(sizes, default=1) - min(sizes, default=1) <= 1


def test_a_batch_signature_is_no_signature_of_another_record(keys_dir: Path) -> None:
    signer = Signer.load(keys_dir, "router")
    batch = values(4)
    signatures = signer.sign_batch(batch)
    keys = PublicKeys.load(keys_dir)
    # Another record of the batch, under this record's proof.
    assert not keys.verify("router", batch[1], signatures[0])
    # The batch signature taken out of its header and used as a plain signature.
    plain = signatures[0].split(".")[3]
    assert not keys.verify("router", batch[0], plain)


def test_a_tampered_batch_header_fails(keys_dir: Path) -> None:
    signer = Signer.load(keys_dir, "router")
    batch = values(6)
    header = signer.sign_batch(batch)[2]
    keys = PublicKeys.load(keys_dir)
    prefix, index, size, sig, proof = header.split(".")
    raw = bytearray(base64.b64decode(proof))
    raw[0] ^= 1
    flipped_proof = base64.b64encode(bytes(raw)).decode()
    raw_sig = bytearray(base64.b64decode(sig))
    raw_sig[5] ^= 1
    flipped_sig = base64.b64encode(bytes(raw_sig)).decode()
    for bad in (
        f"{prefix}.{index}.{size}.{sig}.{flipped_proof}",
        f"{prefix}.{index}.{size}.{flipped_sig}.{proof}",
        f"{prefix}.{int(index) + 1}.{size}.{sig}.{proof}",
        f"{prefix}.{index}.{int(size) + 1}.{sig}.{proof}",
        f"{prefix}.{index}.{size}.{sig}",
        f"{prefix}.{index}.{size}.{sig}.{proof}.",
        f"{prefix}.+{index}.{size}.{sig}.{proof}",
        f"{prefix}.{index}.{size}.{sig}.{proof[:-4]}",
        f"{prefix}.{index}.{size}.not-base64.{proof}",
    ):
        assert not keys.verify("router", batch[2], bad), bad
    # Answers are remembered per root: the good header still verifies after the bad.
    assert keys.verify("router", batch[2], header)
