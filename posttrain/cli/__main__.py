"""`python -m posttrain.cli` (how `--launcher accelerate` starts each rank, and the tests run it)."""

from posttrain.cli import main

main()
