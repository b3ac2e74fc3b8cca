"""The HTML chip-comparison report (`lab report`), made from the results store alone.

`build_report(store, campaigns, ...)` gathers the sections into a `Report`; `render_html(report)`
turns it into one self-contained page; `write_report(store_path, campaigns, out)` does both.
"""
from .render import Report, Unavailable, build_report, render_html, write_report

__all__ = ["Report", "Unavailable", "build_report", "render_html", "write_report"]
