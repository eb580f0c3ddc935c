"""Shim so that older pip / setuptools editable installs work; metadata lives in setup.cfg."""

from setuptools import setup

setup()
