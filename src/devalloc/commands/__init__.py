"""Sub-commands of the ``devalloc`` CLI beyond the built-in ones in :mod:`devalloc.cli`.

Each module here defines ``register(sub)``, which adds its sub-parser(s) to the CLI's
sub-parser set and sets ``func`` (``(argparse.Namespace) -> int``, the exit status) on them.
:mod:`devalloc.cli` discovers the modules at start-up (sorted by name), so adding a command is
adding a module. Shared helpers live in :mod:`devalloc.commands._common`.
"""
