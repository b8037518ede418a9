"""Shim for tools that still look for setup.py: everything lives in pyproject.toml.

Older nbdev projects kept their metadata in settings.ini and read it here; nbdev 3 refuses settings.ini
and reads [project] and [tool.nbdev] from pyproject.toml instead (see "Project layout" on the development page,
nbs/99_development.ipynb).
"""
from setuptools import setup

setup()
