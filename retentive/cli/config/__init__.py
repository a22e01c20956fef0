"""YAML configs -> an updater, with ``class_path`` / ``init_args`` as in LightningCLI.

Every object is named by its import path, so any importable class (or function) can be used::

    updater:                    # required: a ModelUpdater subclass and its own arguments
      class_path: retentive.DarkExperienceReplayModelUpdater
      init_args: {memory_size: 500, alpha: 0.5, beta: 0.5}
    model:                      # required: called with init_args; any nn.Module returning logits
      class_path: retentive.models.MLP
    loss_fn:                    # required
      class_path: torch.nn.CrossEntropyLoss
    optimizer:                  # required: partial(class, **init_args), later called with the parameters
      class_path: torch.optim.SGD
      init_args: {lr: 0.1}
    learning_rate_scheduler:    # optional: partial(class, **init_args), later called with the optimizer
    trainer: {max_epochs: 1}    # optional: the updater's Trainer settings (TRAINER_KEYS)
    logger:                     # optional: a logger spec; false: none; absent: TensorBoard in tb_logs/
    seed: 0                     # optional: seeds the model's initialisation and every update

The updater's ``class_path`` may also be a name a registered method answers to (``der``, ``DER``:
see :mod:`retentive.methods` and ``retentive benchmark --list-methods``).
Inside ``init_args`` a mapping with a ``class_path`` is itself built (e.g. a list of components).
Arguments are checked against the signature and type hints of what they are passed to (an
updater's signature lists every argument it takes: :mod:`retentive.updaters.signature`) before
anything is built.

The package has one module per stage: :mod:`.schema` (the sections and the checked config),
:mod:`.parsing` (YAML and ``--set`` to a checked config), :mod:`.hints` and :mod:`.signatures`
(type checks against what a value is passed to), :mod:`.checking` (imports and argument checks)
and :mod:`.building` (the checked config to objects). Importing it imports neither torch nor
Lightning; checking a config imports what the config names.
"""

from __future__ import annotations

from retentive.cli.config.building import build, build_updater, factory, instantiate
from retentive.cli.config.checking import check_arguments, check_spec, check_value, import_object, is_spec, parse_spec
from retentive.cli.config.hints import describe, describe_value, matches, may_build
from retentive.cli.config.parsing import (
    apply_override,
    load_config,
    parse_config,
    parse_override,
    parse_yaml,
)
from retentive.cli.config.schema import (
    RUNTIME_KEYS,
    SECTIONS,
    SPEC_KEYS,
    TRAINER_KEYS,
    ConfigError,
    Source,
    Spec,
    UpdateConfig,
)
from retentive.cli.config.signatures import Parameter, Signature, signature_of

__all__ = [
    "RUNTIME_KEYS",
    "SECTIONS",
    "SPEC_KEYS",
    "TRAINER_KEYS",
    "ConfigError",
    "Parameter",
    "Signature",
    "Source",
    "Spec",
    "UpdateConfig",
    "apply_override",
    "build",
    "build_updater",
    "check_arguments",
    "check_spec",
    "check_value",
    "describe",
    "describe_value",
    "factory",
    "import_object",
    "instantiate",
    "is_spec",
    "load_config",
    "matches",
    "may_build",
    "parse_config",
    "parse_override",
    "parse_spec",
    "parse_yaml",
    "signature_of",
]
