"""``python -m redlease``: the redlease command line (see redlease.cli)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m redlease"))
