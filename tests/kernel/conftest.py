"""Kernel tests run inside the VM (scripts/vmtest.py), as root, with the fixture loaded.

Outside the VM every test here is skipped with that reason.  Inside it, a
missing capability (no fixture, no BTF, not root) is a failure, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from irqlock.kernel.kallsyms import Kallsyms
from tests.kernel.fixture import CONTROL, Fixture

IN_VM = os.environ.get("IRQLOCK_IN_VM") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if IN_VM:
        return
    skip = pytest.mark.skip(reason="kernel test: runs inside the VM, see scripts/vmtest.py")
    for item in items:
        if "tests/kernel/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixture() -> Iterator[Fixture]:
    assert os.geteuid() == 0, "kernel tests must run as root"
    assert Path("/sys/kernel/btf/vmlinux").exists(), "the guest kernel has no BTF"
    assert CONTROL.exists(), (
        f"{CONTROL} missing: the fixture module was not loaded "
        f"(IRQLOCK_FIXTURE_KO={os.environ.get('IRQLOCK_FIXTURE_KO')})")
    yield Fixture()


@pytest.fixture(scope="session")
def kallsyms(fixture: Fixture) -> Kallsyms:
    """Loaded after the fixture module, so its symbols are in it."""
    return Kallsyms.load()
