"""`lab score --profile P`: rank catalog chips for a selection profile, with measurements."""
from __future__ import annotations

from .. import jsonio
from ..textsafe import console
from .. import argtypes
import sys
from pathlib import Path

from ..catalog import load_catalog
from ..errors import ConfigError
from ..records import ResultRow
from ..scoring import CRITERIA, ChipScore, load_model_flops, load_profiles, score_chips


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score chips against a selection profile",
        description="Score every catalog chip against a selection profile: the seven deployment "
        "criteria + measured performance from the store, exclusions with reasons, rank stability "
        "under +/-20% weight changes and Pareto membership (latency, energy, price).")
    p.add_argument("--profile", required=True, metavar="ID", help="profile id (see lab/data/profiles.yaml)")
    p.add_argument("--campaign", action="append", metavar="NAME",
                   help="use measurements of this campaign only (repeatable; default: all)")
    p.add_argument("--catalog", metavar="PATH", default=None, help="chip catalog YAML (default: built-in)")
    p.add_argument("--profiles", metavar="PATH", default=None,
                   help="extra profiles YAML (added to, and overriding, the built-in ones)")
    p.add_argument("--models-dir", metavar="DIR", default="models",
                   help="where models/<id>/meta.json give FLOPs for utilisation (default ./models)")
    p.add_argument("--draws", type=argtypes.integer(1, 100_000, what="a draw count"), default=1000, help="Monte Carlo weight draws (default 1000)")
    p.add_argument("--seed", type=argtypes.integer(0, 2 ** 32 - 1, what="a seed"), default=0, help="Monte Carlo seed (default 0)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def load_rows(store_path: str, campaigns: list[str] | None) -> tuple[list[ResultRow], str]:
    """Rows of the store (or none, with a note, when there is no store yet)."""
    if not Path(store_path).is_file():
        if campaigns:
            raise ConfigError(f"no results store at {store_path}", fix="run a campaign first or pass --store PATH")
        return [], f"no store at {store_path}: measured criterion unknown for every chip"
    from ..store import Store

    store = Store(store_path)
    try:
        if campaigns:
            have = set(store.campaigns())
            missing = [c for c in campaigns if c not in have]
            if missing:
                raise ConfigError(f"campaign {missing[0]!r} not in {store_path}",
                                  fix="known: " + (", ".join(sorted(have)) or "none"))
        rows = store.results(campaigns)
    finally:
        store.close()
    ok = sum(1 for r in rows if r.ok)
    return rows, f"{ok} ok measurement rows from {store_path}" + (f" (campaigns {', '.join(campaigns)})" if campaigns else "")


def _cell(v):
    return "n/a" if v is None else f"{v:.2f}"


def render_table(results: list[ChipScore], profile, note: str, draws: int, seed: int) -> None:
    from rich.table import Table

    con = console(width=None if sys.stdout.isatty() else 220)
    short = {"domain": "dom", "supply": "supply", "tops": f"TOPS {profile.precision}", "frequency": "freq",
             "memory": "mem", "video_isp": "video/ISP", "price": "price", "measured": "measured"}
    t = Table(title=f"profile {profile.id}: {profile.description}", title_justify="left")
    for col in ["rank", "chip", "score", "cover"] + [f"{short[k]} (w{profile.weights[k]:g})" for k in CRITERIA] + ["stable", "pareto"]:
        t.add_column(col)
    for r in results:
        if r.excluded:
            continue
        t.add_row(str(r.rank), r.chip, f"{r.score:.1f}", f"{r.coverage:.0%}",
                  *[_cell(r.criteria[k].score) for k in CRITERIA],
                  "n/a" if r.stability is None else f"{r.stability:.0%}",
                  "n/a" if r.pareto is None else ("yes" if r.pareto else "no"))
    con.print(t)
    inc = [r for r in results if not r.excluded]
    if inc:
        w = inc[0]
        con.print(f"winner {w.chip} stays first in {w.first_share:.0%} of {draws} draws "
                  f"(each weight x U(0.8, 1.2), seed {seed}); n/a = unknown, weight renormalised.")
    con.print(f"measurements: {note}")
    exc = [r for r in results if r.excluded]
    if exc:
        con.print(f"excluded ({len(exc)}):")
        for r in exc:
            con.print(f"  {r.chip}: {r.reason}", markup=False, highlight=False)


def run(args) -> int:
    profiles = load_profiles(args.profiles)
    if args.profile not in profiles:
        raise ConfigError(f"unknown profile {args.profile!r}", path=args.profiles,
                          fix="known: " + ", ".join(sorted(profiles)))
    if args.draws < 1:
        raise ConfigError("--draws must be >= 1")
    profile = profiles[args.profile]
    catalog = load_catalog(args.catalog)
    rows, note = load_rows(args.store, args.campaign)
    flops = load_model_flops(args.models_dir)
    results = score_chips(catalog, profile, rows, flops=flops, draws=args.draws, seed=args.seed)
    if args.format == "json":
        print(jsonio.dumps([r.to_json() for r in results], indent=2))
    else:
        render_table(results, profile, note, args.draws, args.seed)
    return 0
