"""Write the report: one self-contained HTML page (figures as base64 PNG data URIs, no scripts, no
external resources) and a markdown page beside it (figures as PNG files next to it). Every file is
written to a temporary name in the same folder and renamed over the target."""

from __future__ import annotations

import base64
import html
import os
import tempfile
from pathlib import Path

from fairrec_ray.report.tables import Section, Table, fmt

HTML_FILE = "report.html"
MD_FILE = "report.md"
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; background: #fff; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .85em; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f3f7; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: .8em; }
.note { color: #555; font-size: .9em; }
"""


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the page from a web server or a colleague
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{html.escape(table.caption)}</caption>"
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(title: str, intro: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(intro)}</p>',
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f'<p class="note">{html.escape(section.text)}</p>')
        for fig in section.figures:
            data = base64.b64encode(fig.png).decode("ascii")
            parts.append(
                f'<figure id="{fig.name}"><img src="data:image/png;base64,{data}" alt="{html.escape(fig.title)}">'
                f"<figcaption>{html.escape(fig.title)}</figcaption></figure>"
            )
        parts.extend(_html_table(t) for t in section.tables)
        if section.commands:
            commands = "\n\n".join(section.commands)
            parts.append(f"<h3>Commands</h3><pre>{html.escape(commands)}</pre>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_cell(value: object) -> str:
    return fmt(value).replace("|", "\\|")


def render_markdown(title: str, intro: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", intro, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        for fig in section.figures:
            lines += [f"![{fig.title}]({fig.name}.png)", ""]
        for table in section.tables:
            lines += [f"**{table.caption}**", ""]
            lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
            lines.append("|" + "|".join("---" for _ in table.columns) + "|")
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.rows]
            lines.append("")
        if section.commands:
            lines += ["```", "\n\n".join(section.commands), "```", ""]
    return "\n".join(lines)


def write_report(output: Path, title: str, intro: str, sections: list[Section]) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and the figures' PNGs into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    written = {}
    for section in sections:
        for fig in section.figures:
            written[fig.name] = output / f"{fig.name}.png"
            write_atomic(written[fig.name], fig.png)
    written["html"] = output / HTML_FILE
    write_atomic(written["html"], render_html(title, intro, sections).encode())
    written["markdown"] = output / MD_FILE
    write_atomic(written["markdown"], render_markdown(title, intro, sections).encode())
    return written
