"""A tiny document model rendered to Markdown and to self-contained HTML, so both reports say the same."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


Block = Heading | Paragraph | Table | Image


@dataclass
class Document:
    """An ordered list of blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Add a table; cells are shown with :func:`str`, ``None`` as ``n/a``."""
        cells = tuple(tuple("n/a" if cell is None else str(cell) for cell in row) for row in rows)
        self.blocks.append(Table(tuple(headers), cells))

    def to_markdown(self, relative_to: Path) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if isinstance(block, Heading):
                lines += [f"{'#' * block.level} {block.text}", ""]
            elif isinstance(block, Paragraph):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                lines.append("| " + " | ".join(block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in block.rows]
                lines.append("")
            else:
                lines += [f"![{block.alt}]({block.path.relative_to(relative_to).as_posix()})", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
            "table{border-collapse:collapse;margin:0.5rem 0 1.2rem}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:left}th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for block in self.blocks:
            if isinstance(block, Heading):
                parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
            elif isinstance(block, Paragraph):
                parts.append(f"<p>{html.escape(block.text)}</p>")
            elif isinstance(block, Table):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                parts.append(f"<img alt='{html.escape(block.alt)}' src='data:image/png;base64,{data}'>")
        parts.append("</body></html>")
        return "\n".join(parts)
