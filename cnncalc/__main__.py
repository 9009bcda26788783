"""`python -m cnncalc` is the `cnncalc` command."""
from .cli import main

main()
