"""The `pveoci` command line: thin commands over the library, errors turned into one line and an exit code."""
