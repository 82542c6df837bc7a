"""docs/targets.md's support table is the registry's: regenerate it with
`python -c "from jaxviz.attribution import registry; print(registry.target_table())"`."""
from pathlib import Path

from jaxviz.attribution import registry
from jaxviz.core import targets

DOC = Path(__file__).resolve().parents[2] / "docs" / "targets.md"
START, END = "<!-- table: registry.target_table() -->", "<!-- end of table -->"


def test_docs_table_is_the_registrys():
    text = DOC.read_text()
    assert START in text and END in text, f"{DOC} lost its table markers"
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == registry.target_table().strip(), (
        "docs/targets.md disagrees with the registry; paste registry.target_table() between "
        "its markers")


def test_every_no_has_a_reason_and_every_method_a_row():
    table = registry.target_table()
    for name, m in registry.METHODS.items():
        assert f"| `{name}` |" in table
        row = registry.support_of(m)
        assert {key for _, key in registry.COLUMNS} <= set(row)
        if m.targets is not None:  # a declared Support refuses only with a reason
            assert set(targets.KINDS) <= set(m.targets.kinds) | set(m.targets.refused)
