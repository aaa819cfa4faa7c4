"""``python -m plmon.monitor``: the ``plmon`` command without its console script."""

from plmon.monitor.cli import main

if __name__ == "__main__":
    main()
