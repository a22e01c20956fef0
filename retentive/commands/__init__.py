"""The subcommands of the ``retentive`` command line, one per module."""
