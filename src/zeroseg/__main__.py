"""``python -m zeroseg`` runs the command line."""

from zeroseg.cli.app import main

main()
