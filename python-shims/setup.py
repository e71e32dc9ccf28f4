"""Build hook: generate the gRPC stubs from ../proto and copy the canary suite from ../canaries before the
package is copied or linked.

All metadata lives in pyproject.toml; this file only adds those two steps to ``build_py``, which setuptools
runs for wheels, sdists built into wheels and editable installs alike.
"""

import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_stubs  # noqa: E402  (lives beside this file, not in the package)


HERE = os.path.dirname(os.path.abspath(__file__))
# The canary suite ships as package data, so `python -m mechreward_client.canaries` finds it after a plain
# `pip install` (the repository's canaries/suite.json stays the one source; this is a build-time copy).
SUITE_SOURCE = os.path.join(HERE, "..", "canaries", "suite.json")
SUITE_COPY = os.path.join(HERE, "mechreward_client", "_data", "canary_suite.json")


def copy_canary_suite():
    if not os.path.isfile(SUITE_SOURCE):
        raise SystemExit(f"setup: {os.path.abspath(SUITE_SOURCE)} not found; build from a checkout of the whole repository")
    os.makedirs(os.path.dirname(SUITE_COPY), exist_ok=True)
    shutil.copyfile(SUITE_SOURCE, SUITE_COPY)


class BuildPyWithStubs(build_py):
    def run(self):
        generate_stubs.generate()
        copy_canary_suite()
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
