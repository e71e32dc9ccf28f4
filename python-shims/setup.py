"""Build hook: generate the gRPC stubs from ../proto before the package is copied or linked.

All metadata lives in pyproject.toml; this file only adds the stub generation to ``build_py``, which
setuptools runs for wheels, sdists built into wheels and editable installs alike.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_stubs  # noqa: E402  (lives beside this file, not in the package)


class BuildPyWithStubs(build_py):
    def run(self):
        generate_stubs.generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
