"""The top-level backends/ folder installs as the subpackage snn_compiler.backends, so no bare
``backends`` module ever lands in site-packages; setuptools' pyproject tables cannot say that."""
from setuptools import find_packages, setup

backends = ["snn_compiler.backends"] + ["snn_compiler.backends." + p for p in find_packages("backends")]
setup(
    packages=find_packages(include=["snn_compiler", "snn_compiler.*"]) + backends,
    package_dir={"snn_compiler": "snn_compiler", "snn_compiler.backends": "backends"},
)
