"""Generate the gRPC stubs of ``mechreward_client`` from the repository's proto/ (build and install time).

    python generate_stubs.py            # what setup.py's build step runs; needs grpcio-tools

The proto is staged under ``mechreward_client/_generated/`` in a temporary include root, so protoc writes
absolute imports (``from mechreward_client._generated import reward_pb2``) and nothing is edited after
generation. The wire names are untouched: the service is still ``mechreward.v1.RewardService``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_SOURCE = os.path.join(HERE, "..", "proto", "mechreward", "v1", "reward.proto")
PACKAGE_DIR = os.path.join("mechreward_client", "_generated")
OUTPUTS = ("reward_pb2.py", "reward_pb2.pyi", "reward_pb2_grpc.py")


def generate(proto_source: str = PROTO_SOURCE, out_root: str = HERE) -> list[str]:
    """Write reward_pb2.py, reward_pb2.pyi and reward_pb2_grpc.py into out_root/mechreward_client/_generated."""
    proto_source = os.path.abspath(proto_source)
    if not os.path.isfile(proto_source):
        raise SystemExit(
            f"generate_stubs: {proto_source} not found. The stubs are built from the mechreward repository's "
            "proto/ folder: install python-shims from a checkout of the whole repository."
        )
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError as exc:  # the build requirement is declared in pyproject.toml
        raise SystemExit("generate_stubs: grpcio-tools is required to build mechreward_client") from exc

    out_dir = os.path.join(out_root, PACKAGE_DIR)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mechreward-proto-") as staging:
        staged = os.path.join(staging, PACKAGE_DIR, "reward.proto")
        os.makedirs(os.path.dirname(staged))
        shutil.copyfile(proto_source, staged)
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = [
            "grpc_tools.protoc",
            f"-I{staging}",
            f"-I{well_known}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            os.path.join(PACKAGE_DIR, "reward.proto"),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"generate_stubs: protoc failed on {proto_source}")
    written = [os.path.join(out_dir, name) for name in OUTPUTS]
    missing = [path for path in written if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f"generate_stubs: protoc did not write {missing}")
    return written


if __name__ == "__main__":
    for path in generate(*sys.argv[1:2]):
        print(os.path.relpath(path, HERE))
