"""``python -m adapters`` runs the ``threadguard`` command."""

from adapters.cli import main

main()
