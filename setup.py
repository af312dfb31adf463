"""Builds the CO-RE BPF objects with clang when the package is built (pip install)."""

import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithBpf(build_py):
    def run(self) -> None:
        subprocess.run(["make", "-C", "src/irqlock/bpf"], check=True)
        super().run()


setup(cmdclass={"build_py": BuildWithBpf})
