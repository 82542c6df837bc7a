"""Alias of `python -m experiments.bench` (same flags), kept for the commands in README and docs/."""
from experiments.bench.run import main

if __name__ == "__main__":
    main()
