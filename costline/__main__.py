"""`python -m costline` runs the CLI."""

from costline.cli import main

main()
