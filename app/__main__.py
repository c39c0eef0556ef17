"""``python -m app`` is the ``devicehooks`` command."""

from app.cli import main

if __name__ == "__main__":
    main()
