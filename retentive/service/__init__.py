"""The watch service: a model home kept up to date with the chunks that arrive in a folder or
under a URL prefix (``retentive watch``). See :mod:`retentive.service.watch`."""

from retentive.service.chunk import WatchSettings
from retentive.service.status import read_status
from retentive.service.watch import WatchService

__all__ = ["WatchService", "WatchSettings", "read_status"]
