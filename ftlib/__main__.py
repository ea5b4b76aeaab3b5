"""``python -m ftlib``: the ``ftlib`` console script."""
from ftlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
