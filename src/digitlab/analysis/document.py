"""A small document model rendered both as Markdown (figures beside it) and as one
self-contained HTML file (figures embedded), so a report is written once."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45;overflow-wrap:break-word}
h1{border-bottom:2px solid #333;padding-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.8em}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}
.missing{background:#fff4e0;border-left:4px solid #e90;padding:.4em .8em}
"""


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def warning(self, text: str) -> None:
        self.blocks.append(("warning", text))

    def table(self, header: list[str], rows: list[list], folded: str = "") -> None:
        """A table; with `folded`, shown closed under that summary line (HTML <details>)."""
        self.blocks.append(("table", header, [[str(c) for c in row] for row in rows], folded))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", Path(path), caption))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self, base: Path) -> str:
        """Markdown with figure links relative to `base` (the folder the file goes in)."""
        out = [f"# {self.title}\n"]
        for kind, *args in self.blocks:
            if kind == "heading":
                out.append(f"## {args[0]}\n")
            elif kind == "paragraph":
                out.append(f"{args[0]}\n")
            elif kind == "warning":
                out.append(f"> **Note:** {args[0]}\n")
            elif kind == "table":
                header, rows, folded = args
                if folded:
                    out.append(f"<details><summary>{folded}</summary>\n")
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join(" --- " for _ in header) + "|")
                out.extend("| " + " | ".join(row) + " |" for row in rows)
                out.append("\n</details>\n" if folded else "")
            elif kind == "figure":
                path, caption = args
                out.append(f"![{caption}]({Path(os.path.relpath(path, base)).as_posix()})\n")
                out.append(f"*{caption}*\n")
            elif kind == "code":
                out.append(f"```\n{args[0]}\n```\n")
        return "\n".join(out)

    def html(self) -> str:
        """One HTML page with every figure embedded as a data URI: opens offline."""
        esc = html.escape
        out = [
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(self.title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(self.title)}</h1>"
        ]
        for kind, *args in self.blocks:
            if kind == "heading":
                out.append(f"<h2>{esc(args[0])}</h2>")
            elif kind == "paragraph":
                out.append(f"<p>{esc(args[0])}</p>")
            elif kind == "warning":
                out.append(f"<p class='missing'>{esc(args[0])}</p>")
            elif kind == "table":
                header, rows, folded = args
                if folded:
                    out.append(f"<details><summary>{esc(folded)}</summary>")
                out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
                out.extend("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
                out.append("</table></details>" if folded else "</table>")
            elif kind == "figure":
                path, caption = args
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(
                    f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{esc(caption)}</figcaption></figure>"
                )
            elif kind == "code":
                out.append(f"<pre>{esc(args[0])}</pre>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, folder: Path, stem: str = "report") -> tuple[Path, Path]:
        """Write `<stem>.html` and `<stem>.md` into `folder`; return both paths."""
        from digitlab.fileio import atomic_write_text

        html_path, md_path = folder / f"{stem}.html", folder / f"{stem}.md"
        atomic_write_text(html_path, self.html())
        atomic_write_text(md_path, self.markdown(folder))
        return html_path, md_path
