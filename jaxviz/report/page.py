"""report.html and report.md: one page per run, a section per stage, nothing fetched online."""
from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from jaxviz import io
from jaxviz.report.base import Section

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}code{background:#f4f4f4;padding:0 .2em}
.caption{color:#444}.settings{font-size:.85em;color:#666}
.note{background:#fff4d6;border-left:4px solid #e0a000;padding:.3em .6em;margin:.2em 0 .8em}"""


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


def _notes_html(notes) -> list[str]:
    return [f"<p class='note'>warning: {html.escape(n)}</p>" for n in notes]


def page_html(title: str, intro: str, table: Sequence[Sequence],
              sections: Sequence[Section]) -> str:
    """The HTML page; table: rows of cells, the first row the header. A section's notes
    (warnings) sit right under the figure they concern; its settings line only when it
    has settings."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(intro)}</p>", _table_html(table)]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p class='caption'>{html.escape(s.caption)}</p>")
        for f in s.figures:
            parts.append(f"<img src='{html.escape(f)}' alt='{html.escape(s.title)}'>")
            parts += _notes_html(s.notes.get(f, ()))
        parts += _notes_html(s.notes.get("", ()))
        if s.settings:
            settings = ", ".join(f"{k}={v}" for k, v in s.settings.items())
            parts.append(f"<p class='settings'>settings: <code>{html.escape(settings)}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _notes_md(notes) -> list[str]:
    return [f"> **warning:** {n}" for n in notes] + ([""] if notes else [])


def page_md(title: str, intro: str, table: Sequence[Sequence], sections: Sequence[Section]) -> str:
    """The same page in Markdown."""
    md = [f"# {title}", "", intro, "", _table_md(table), ""]
    for s in sections:
        md += [f"## {s.title}", "", s.caption, ""]
        for f in s.figures:
            md += [f"![{s.title}]({f})", ""] + _notes_md(s.notes.get(f, ()))
        md += _notes_md(s.notes.get("", ()))
        if s.settings:
            md += [f"settings: `{', '.join(f'{k}={v}' for k, v in s.settings.items())}`", ""]
    return "\n".join(md)


def write_report(out_dir, title: str, intro: str, table: Sequence[Sequence],
                 sections: Sequence[Section]) -> tuple[Path, Path]:
    """Write report.html and report.md into out_dir; figures referenced by relative path
    must already be there."""
    out_dir = Path(out_dir)
    for s in sections:
        for f in s.figures:
            if not (out_dir / f).exists():
                raise FileNotFoundError(f"report figure {f!r} is missing from {out_dir}")
    return (io.write_text(out_dir / "report.html", page_html(title, intro, table, sections)),
            io.write_text(out_dir / "report.md", page_md(title, intro, table, sections)))
