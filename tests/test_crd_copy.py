"""tests/crds is a byte-for-byte copy of the team's shared/crds (upstream CRDs, unmodified)."""

import pytest

from tests.harness import SHARED_CRDS, VENDORED_CRDS


@pytest.mark.skipif(not SHARED_CRDS.is_dir(), reason="no shared/crds beside this checkout to compare with")
def test_vendored_crds_match_shared():
    shared = {p.name: p.read_bytes() for p in SHARED_CRDS.iterdir() if p.is_file()}
    vendored = {p.name: p.read_bytes() for p in VENDORED_CRDS.iterdir() if p.is_file()}
    assert sorted(vendored) == sorted(shared)
    assert [n for n in shared if shared[n] != vendored[n]] == []
