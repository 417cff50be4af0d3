"""`python -m pveoci` runs the command line."""

from pveoci.cli.main import main

if __name__ == "__main__":
    main()
