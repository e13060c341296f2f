"""Allow `python -m fusecli`."""

from fusecli.cli.main import main

if __name__ == "__main__":
    main()
