"""The installed gRPC stubs are exactly what generate_stubs.py makes from ../proto today (never hand-edited,
never stale), and they describe the service under its wire name."""

from __future__ import annotations

import os
import sys

from support import SHIMS

sys.path.insert(0, SHIMS)
import generate_stubs  # noqa: E402

from mechreward_client._generated import reward_pb2  # noqa: E402


def test_installed_stubs_match_a_fresh_generation(tmp_path):
    fresh = generate_stubs.generate(out_root=str(tmp_path))
    for path in fresh:
        installed = os.path.join(SHIMS, generate_stubs.PACKAGE_DIR, os.path.basename(path))
        with open(path, "rb") as a, open(installed, "rb") as b:
            assert a.read() == b.read(), f"{installed} differs from the proto: reinstall (bash scripts/setup.sh)"


def test_service_keeps_its_wire_name():
    service = reward_pb2.DESCRIPTOR.services_by_name["RewardService"]
    assert service.full_name == "mechreward.v1.RewardService"
    # Methods are only ever added at the end: existing clients keep their names.
    assert [m.name for m in service.methods] == ["Score", "ListPacks", "GetInfo", "ListRuns", "GetRun", "RegisterSharedMemory", "UnregisterSharedMemory"]
