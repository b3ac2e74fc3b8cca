"""The HTML chip-comparison report (`lab report`), made from the results store alone.

`sections` computes what each section shows from result records (`serving` the serving section,
`plots` the charts); `render.build_report(store, campaigns, ...)` gathers them into a `Report`;
`render.render_html(report)` turns it into one self-contained page; `render.write_report(store_path,
campaigns, out)` does both. The package init imports nothing (no package <-> module cycle).
"""
