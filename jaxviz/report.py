"""report.html and report.md: one page per run, a section per method, nothing fetched online."""
from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple


class Section(NamedTuple):
    title: str
    caption: str  # what to look at, two lines at most
    figures: Sequence[str]  # paths relative to the report's directory
    settings: dict


def write_atomic(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _table_html(rows: Sequence[Sequence]) -> str:
    head, *body = rows
    cells = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    out = [f"<tr>{cells}</tr>"]
    for r in body:
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    return "<table>" + "".join(out) + "</table>"


def _table_md(rows: Sequence[Sequence]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in body]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}code{background:#f4f4f4;padding:0 .2em}
.caption{color:#444}.settings{font-size:.85em;color:#666}"""


def write_report(out_dir: Path, title: str, intro: str, table: Sequence[Sequence],
                 sections: Sequence[Section]) -> tuple[Path, Path]:
    """Write report.html and report.md into out_dir; figures referenced by relative path."""
    out_dir = Path(out_dir)
    for s in sections:
        for f in s.figures:
            if not (out_dir / f).exists():
                raise FileNotFoundError(f"report figure {f!r} is missing from {out_dir}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(intro)}</p>", _table_html(table)]
    md = [f"# {title}", "", intro, "", _table_md(table), ""]
    for s in sections:
        settings = ", ".join(f"{k}={v}" for k, v in s.settings.items())
        parts.append(f"<h2>{html.escape(s.title)}</h2><p class='caption'>{html.escape(s.caption)}</p>")
        parts += [f"<img src='{html.escape(f)}' alt='{html.escape(s.title)}'>" for f in s.figures]
        parts.append(f"<p class='settings'>settings: <code>{html.escape(settings)}</code></p>")
        md += [f"## {s.title}", "", s.caption, ""] + [f"![{s.title}]({f})" for f in s.figures]
        md += ["", f"settings: `{settings}`", ""]
    parts.append("</body></html>")
    return (write_atomic(out_dir / "report.html", "\n".join(parts)),
            write_atomic(out_dir / "report.md", "\n".join(md)))
