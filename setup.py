"""Shim for tools that still look for setup.py: everything lives in pyproject.toml.

Older nbdev projects kept their metadata in settings.ini and read it here; nbdev 3 refuses settings.ini
and reads [project] and [tool.nbdev] from pyproject.toml instead (see README, "Project layout").
"""
from setuptools import setup

setup()
