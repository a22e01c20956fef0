"""Model updaters: the load → fit → save life cycle around a Learner.

The method updaters are those the method registry (:mod:`retentive.methods`) lists under this
package, imported here; a new updater module with a registered spec needs no edit of this file.
"""

import importlib

from retentive.methods.registry import updater_exports
from retentive.updaters.base import ModelUpdater, split_batch

#: the registered updaters defined in this package -> their module
_METHODS = {
    name: module for name, module in updater_exports(entry_points=False).items() if module.startswith(f"{__name__}.")
}
for _name, _module in _METHODS.items():
    globals()[_name] = getattr(importlib.import_module(_module), _name)
del _name, _module

__all__ = ["ModelUpdater", "split_batch"]
__all__.extend(sorted(_METHODS))
