"""`python -m reconad` runs the command line (needed by Fabric's DDP launcher)."""

from reconad.cli import main

if __name__ == "__main__":
    main()
