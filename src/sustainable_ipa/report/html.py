"""A self-contained HTML page: interactive figures with plotly.js inlined once, tables that fit the page; it opens
offline and mails as one file.

It reads at 1280 px: the body is at most 1200 px wide, tables wider than that are split into several with the
same key columns first, and a cell's text wraps (a heading after an underscore, a value anywhere if need be)
rather than widen the page.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0;max-width:100%}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
td{overflow-wrap:anywhere}th{overflow-wrap:break-word}
th{background:#f3f3f3}.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em 1em}
img{max-width:100%;margin:.5em 0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
.figure{width:100%;margin:.5em 0 1.5em}.static{font-size:12px;color:#555}"""
MAX_COLUMNS = 8  # per table, key columns included: more do not fit 1200 px at 12 px without wrapping every cell


def figure(fig, static: Path | None = None) -> str:
    """An interactive plotly figure (hover names each configuration) that fills the page's width; plotly.js comes
    once with the page. `static`: its PNG copy in the report folder, named under it."""
    div = fig.to_html(full_html=False, include_plotlyjs=False, default_width="100%",
                      config={"responsive": True, "displaylogo": False})
    note = f'<div class="static">static copy: {html.escape(static.name)}</div>' if static else ""
    return f'<div class="figure">{div}{note}</div>'


def table(frame: pd.DataFrame, digits: int = 4, keys: list[str] | None = None,
          max_columns: int = MAX_COLUMNS) -> str:
    """One HTML table, or several of at most `max_columns` columns each, every one starting with the `keys`
    columns (by default those of `frame` that name a configuration: hardware, adaptation)."""
    keys = [k for k in (keys if keys is not None else ["hardware", "adaptation"]) if k in frame]
    rest = [c for c in frame.columns if c not in keys]
    width = max(max_columns - len(keys), 1)
    parts = [rest[i:i + width] for i in range(0, len(rest), width)] or [[]]
    tables = "".join(frame[keys + part].to_html(index=False, float_format=lambda v: f"{v:.{digits}g}", border=0,
                                                na_rep="—") for part in parts)
    # a metric's name may break after each underscore (copied, it is the name still)
    return re.sub(r"<th>([^<]*)</th>", lambda m: "<th>" + m.group(1).replace("_", "_<wbr>") + "</th>", tables)


def page(title: str, sections: list[tuple[str, str]], warnings: list[str]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f'<p class="warn">⚠ {html.escape(w)}</p>' for w in warnings]
    for heading, content in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>\n{content}")
    content = "".join(body)
    script = f"<script>{_plotly_js()}</script>" if 'class="plotly-graph-div"' in content else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style>{script}</head><body>{content}</body></html>")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
