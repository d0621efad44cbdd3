"""`python -m hubvm`: the same as the `hubvm` command."""

from hubvm.program import main

main()
