"""``python -m ftlib.train ...``: the same as ``ftlib train ...`` (see ``ftlib train --help``)."""
import sys

from ftlib.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
