"""Reports as one self-contained HTML file: text, tables and inline SVG plots, no external files."""

from .html import write_html

__all__ = ["write_html"]
