"""``python -m nautilus_tasks`` is the command line."""

from .cli import main

main()
