"""``python -m cl``: see :func:`cl.cli.console_main`."""

from .cli import console_main

console_main()
