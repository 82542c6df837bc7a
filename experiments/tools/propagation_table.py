"""Write docs/propagation_primitives.md from the propagation rule tables.

    python -m experiments.tools.propagation_table
"""
from pathlib import Path

from jaxviz import io
from jaxviz.propagation import table

DOC = Path(__file__).resolve().parents[2] / "docs" / "propagation_primitives.md"


def main():
    io.write_text(DOC, table.render())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
