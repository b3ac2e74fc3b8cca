"""`lab chips`: list the chip catalog (table or JSON) with TOPS per precision and sources."""
from __future__ import annotations

import sys

from lab.core import jsonio
from lab.devices.catalog import TOPS_PRECISIONS, Catalog, Chip, load_catalog


def register(subparsers) -> None:
    p = subparsers.add_parser("chips", help="list the chip catalog",
                              description="List the chip catalog: TOPS per stated precision "
                              "(null = stated unknown), price basis, sources.")
    p.add_argument("--catalog", metavar="PATH", default=None,
                   help="chip catalog YAML (default: built-in lab/data/chips.yaml)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--wide", action="store_true", help="table: every column, whatever the terminal width")
    p.set_defaults(func=run)


def chip_json(chip: Chip) -> dict:
    """The JSON object of one chip: id, vendor, tops (precision -> value|null), sources, ..."""
    acc = chip.accelerator

    def fig(f):
        if f is None:
            return None
        return {"value": f.value, "low": f.low, "high": f.high, "unit": f.unit, "source": f.source,
                "confidence": f.confidence, "verified": f.verified, "note": f.note}

    return {
        "id": chip.id, "name": chip.name, "vendor": chip.vendor, "family": chip.family,
        "domain": list(chip.domain),
        "accelerator": {"kind": acc.kind, "name": acc.name, "processor": acc.processor},
        "tops": {p: f.value for p, f in acc.tops.items()},
        "tops_sparse": {p: f.value for p, f in acc.tops_sparse.items()},
        "tops_detail": {p: fig(f) for p, f in acc.tops.items()},
        "unsupported_precisions": list(acc.unsupported),
        "process_nm": fig(chip.process_nm),
        "supply": [{"kind": s.kind, "note": s.note, "source": s.source, "confidence": s.confidence}
                   for s in chip.supply],
        "power_w": fig(chip.power_w),
        "memory_gb": fig(chip.memory.size_gb),
        "price": [{"basis": p.basis, "currency": p.currency, "low": p.low, "high": p.high,
                   "estimate": p.estimate, "source": p.source, "confidence": p.confidence}
                  for p in chip.prices],
        "price_note": chip.price_note,
        "nnadapter": list(chip.nnadapter),
        "sources": chip.sources(),
    }


def _tops_cell(chip: Chip) -> str:
    acc = chip.accelerator
    parts = []
    for p in TOPS_PRECISIONS:
        if p in acc.tops:
            f = acc.tops[p]
            parts.append(f"{p} {'n/a' if f.value is None else f'{f.value:g}'} [{f.confidence}]")
        elif p in acc.tops_sparse:
            f = acc.tops_sparse[p]
            parts.append(f"{p} {f.value:g} sparse [{f.confidence}]")
    for p in acc.unsupported:
        parts.append(f"{p} unsupported")
    return "; ".join(parts) or ("no accelerator" if acc.kind == "none" else "n/a")


def _price_cell(chip: Chip) -> str:
    if not chip.prices:
        return "n/a"
    p = chip.prices[0]
    rng = f"{p.low:g}" if p.high in (None, p.low) else (f"{p.low:g}-{p.high:g}" if p.low is not None
                                                         else f"<={p.high:g}")
    return f"{p.currency} {rng}{'/h' if p.basis == 'cloud-hourly' else ''} {p.basis}" + (" (est.)" if p.estimate else "")


def render_table(catalog: Catalog, *, wide: bool = False, width: int | None = None, file=None) -> None:
    """The catalog as a table that never cuts chip ids or figures (lab.commands.tables)."""
    from lab.commands.tables import Col, print_table

    cols = [Col("id"), Col("vendor", drop=3), Col("accelerator", drop=2),
            Col("TOPS per precision (dense)", wrap=True), Col("nm", drop=1), Col("W", drop=4),
            Col("price", wrap=True)]
    rows = []
    for chip in catalog:
        nm = chip.process_nm.typical if chip.process_nm else None
        pw = chip.power_w
        w = "n/a" if pw is None or not pw.known else (
            f"{pw.low:g}-{pw.high:g}" if pw.low is not None and pw.high is not None else f"{pw.typical:g}")
        rows.append([chip.id, chip.vendor, chip.accelerator.kind, _tops_cell(chip),
                     "n/a" if nm is None else f"{nm:g}", w, _price_cell(chip)])
    print_table(cols, rows, title=f"chip catalog ({len(catalog)} chips)", wide=wide, width=width,
                file=file or sys.stdout)


def run(args) -> int:
    catalog = load_catalog(args.catalog)
    if args.format == "json":
        print(jsonio.dumps([chip_json(c) for c in catalog], indent=2))
    else:
        render_table(catalog, wide=args.wide)
    return 0
