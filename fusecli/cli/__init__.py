"""The `fuse` command line: one module per command, registered on the root app in main.py."""
