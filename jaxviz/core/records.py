"""A table of named records (attribution methods, metrics): one rule for adding, removing
and finding them, with the same errors everywhere."""
from __future__ import annotations


class Records(dict):
    """{name: record}. noun: what a record is ("method"); kind: its type, for errors."""

    def __init__(self, noun: str, kind: type, kind_name: str):
        super().__init__()
        self.noun, self.kind, self.kind_name = noun, kind, kind_name

    def register(self, record, *, replace: bool = False):
        """Add `record` under record.name (replace=True to overwrite). Returns it."""
        if not isinstance(record, self.kind):
            raise TypeError(f"{self.noun} must be a {self.kind_name}; got "
                            f"{type(record).__name__}")
        if record.name in self and not replace:
            raise ValueError(f"{self.noun} {record.name!r} is already registered; "
                             f"pass replace=True")
        self[record.name] = record
        return record

    def lookup(self, name: str):
        if name not in self:
            raise ValueError(f"unknown {self.noun} {name!r}; registered {self.noun}s: "
                             f"{list(self)}")
        return self[name]

    def unregister(self, name: str) -> None:
        del self[self.lookup(name).name]
