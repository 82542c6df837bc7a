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
.caption{color:#444}.settings{font-size:.85em;color:#666}"""


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


def page_html(title: str, intro: str, table: Sequence[Sequence],
              sections: Sequence[Section]) -> str:
    """The HTML page; table: rows of cells, the first row the header."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(intro)}</p>", _table_html(table)]
    for s in sections:
        settings = ", ".join(f"{k}={v}" for k, v in s.settings.items())
        parts.append(f"<h2>{html.escape(s.title)}</h2><p class='caption'>{html.escape(s.caption)}</p>")
        parts += [f"<img src='{html.escape(f)}' alt='{html.escape(s.title)}'>" for f in s.figures]
        parts.append(f"<p class='settings'>settings: <code>{html.escape(settings)}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def page_md(title: str, intro: str, table: Sequence[Sequence], sections: Sequence[Section]) -> str:
    """The same page in Markdown."""
    md = [f"# {title}", "", intro, "", _table_md(table), ""]
    for s in sections:
        settings = ", ".join(f"{k}={v}" for k, v in s.settings.items())
        md += [f"## {s.title}", "", s.caption, ""] + [f"![{s.title}]({f})" for f in s.figures]
        md += ["", f"settings: `{settings}`", ""]
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
