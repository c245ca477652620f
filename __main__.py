"""`python -m sal3d ...`: the same command line as the `sal3d` console script."""

from sal3d.cli import main

if __name__ == "__main__":
    main(prog_name="sal3d")
