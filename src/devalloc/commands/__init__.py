"""Sub-commands of the ``devalloc`` CLI beyond the built-in ones in :mod:`devalloc.cli`.

Each module here defines ``register(sub)``, which adds its sub-parser(s) to the CLI's
sub-parser set and sets ``func`` (``(argparse.Namespace) -> int``, the exit status) on them.
:mod:`devalloc.cli` imports them by name and lists them in ``devalloc.cli.COMMANDS`` (nothing is
found by listing this directory at run time, which a process may not be allowed to do), so adding
a command is adding a module and listing it there; a test checks that every module is listed.
Shared helpers live in :mod:`devalloc.commands._common`.
"""
