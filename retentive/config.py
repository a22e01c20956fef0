"""Moved to :mod:`retentive.cli.config`; this alias keeps ``retentive.config`` imports working."""

from retentive.cli.config import *  # noqa: F403
from retentive.cli.config import __all__  # noqa: F401
