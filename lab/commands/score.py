"""`lab score --profile P`: rank catalog chips for a selection profile, with measurements."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab.commands import argtypes
from lab.core import jsonio
from lab.core.textsafe import one_line
from lab.devices.catalog import load_catalog
from lab.core.errors import ConfigError
from lab.core.records import ResultRow

if TYPE_CHECKING:
    from lab.decide.scoring import ChipScore


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score chips against a selection profile",
        description="Score every catalog chip against a selection profile: the seven deployment "
        "criteria + measured performance from the store, exclusions with reasons, rank stability "
        "under +/-20% weight changes and Pareto membership (latency, energy, price).")
    p.add_argument("--profile", metavar="ID",
                   help="profile id (without it: the profiles are listed)")
    p.add_argument("--campaign", action="append", metavar="NAME",
                   help="use measurements of this campaign only (repeatable; default: all)")
    p.add_argument("--catalog", metavar="PATH", default=None, help="chip catalog YAML (default: built-in)")
    p.add_argument("--profiles", metavar="PATH", default=None,
                   help="extra profiles YAML (added to, and overriding, the built-in ones)")
    p.add_argument("--models-root", metavar="DIR", default=argparse.SUPPRESS,
                   help="where models/<id>/meta.json give FLOPs for utilisation (default ./models)")
    p.add_argument("--models-dir", dest="models_root", default=argparse.SUPPRESS,  # the old spelling
                   help=argparse.SUPPRESS)
    p.add_argument("--draws", type=argtypes.integer(1, 100_000, what="a draw count"), default=1000, help="Monte Carlo weight draws (default 1000)")
    p.add_argument("--seed", type=argtypes.integer(0, 2 ** 32 - 1, what="a seed"), default=0, help="Monte Carlo seed (default 0)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--wide", action="store_true", help="table: every column, whatever the terminal width")
    p.set_defaults(func=run)


def load_rows(store_path: str, campaigns: list[str] | None) -> tuple[list[ResultRow], str]:
    """Rows of the store (or none, with a note, when there is no store yet)."""
    if not Path(store_path).is_file():
        if campaigns:
            raise ConfigError(f"no results store at {store_path}", fix="run a campaign first or pass --store PATH")
        return [], f"no store at {store_path}: measured criterion unknown for every chip"
    from lab.results.store import Store

    store = Store(store_path, readonly=True)
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


def render_table(results: list[ChipScore], profile, note: str, draws: int, seed: int, *,
                 wide: bool = False, width: int | None = None, file=None, console=None) -> None:
    """The ranking as a table that never cuts chip ids or figures (lab.commands.tables): criteria columns
    of low weight make room first, with a note; then why each n/a `measured` is n/a."""
    from lab.decide.criteria import UNKNOWN_PRIOR
    from lab.decide.profiles import CRITERIA
    from lab.commands.tables import Col, print_table

    if console is not None:  # tests: a recording rich Console
        import io
        buf = io.StringIO()
        render_table(results, profile, note, draws, seed, wide=wide, width=console.width, file=buf)
        console.print(buf.getvalue(), markup=False, highlight=False, end="")
        return
    out = file or sys.stdout
    short = {"domain": "dom", "supply": "supply", "tops": f"TOPS {profile.precision}", "frequency": "freq",
             "memory": "mem", "video_isp": "video/ISP", "price": "price", "measured": "measured"}
    by_weight = sorted(CRITERIA, key=lambda k: (profile.weights[k], k != "measured"))
    prio = {k: 10 + len(CRITERIA) - by_weight.index(k) for k in CRITERIA}  # low weight drops first
    cols = ([Col("rank"), Col("chip"), Col("score"), Col("cover")]
            + [Col(f"{short[k]} (w{profile.weights[k]:g})", drop=prio[k] + (20 if not profile.weights[k] else 0))
               for k in CRITERIA]
            + [Col("stable", drop=9), Col("pareto", drop=8)])
    rows = [[str(r.rank), r.chip, f"{r.score:.1f}", f"{r.coverage:.0%}",
             *[_cell(r.criteria[k].score) for k in CRITERIA],
             "n/a" if r.stability is None else f"{r.stability:.0%}",
             "n/a" if r.pareto is None else ("yes" if r.pareto else "no")]
            for r in results if not r.excluded]
    print_table(cols, rows, title=f"profile {profile.id}: {profile.description}", wide=wide,
                width=width, file=out)
    inc = [r for r in results if not r.excluded]
    if inc:
        w = inc[0]
        print(f"winner {w.chip} stays first in {w.first_share:.0%} of {draws} draws "
              f"(each weight x U(0.8, 1.2), each unknown criterion U(0, {2 * UNKNOWN_PRIOR:g}), "
              f"seed {seed}); n/a = unknown, scored at the prior {UNKNOWN_PRIOR:g}.", file=out)
    na = [r for r in inc if r.criteria["measured"].score is None]
    if na and len(na) == len(inc) and len({r.criteria["measured"].reason for r in na}) == 1:
        print(f"measured n/a for every chip: {na[0].criteria['measured'].reason}", file=out)
    elif na:
        print("measured n/a:", file=out)
        for r in na:
            print(f"  {r.chip}: {r.criteria['measured'].reason}", file=out)
    print(f"measurements: {note}", file=out)
    left = [r for r in results if r.left_out is not None]
    if left:  # lab.results.quality.representative: never a chip's measured performance
        print("left out of the measured criterion (not the chip's own performance):", file=out)
        for r in left:
            print(f"  {r.chip}: {r.left_out.text()}", file=out)
    exc = [r for r in results if r.excluded]
    if exc:
        print(f"excluded ({len(exc)}):", file=out)
        for r in exc:
            print(f"  {r.chip}: {r.reason}", file=out)


def run(args) -> int:
    from lab.decide.measures import load_model_flops
    from lab.decide.profiles import load_profiles
    from lab.decide.scoring import score_chips
    profiles = load_profiles(args.profiles)
    if args.profile is None:
        print("profiles (pass one with `lab score --profile ID`):")
        for pid in sorted(profiles):
            print(one_line(f"  {pid}: {profiles[pid].description}"))
        return 0
    if args.profile not in profiles:
        raise ConfigError(f"unknown profile {args.profile!r}", path=args.profiles,
                          fix="known: " + ", ".join(sorted(profiles)))
    if args.draws < 1:
        raise ConfigError("--draws must be >= 1")
    profile = profiles[args.profile]
    catalog = load_catalog(args.catalog)
    rows, note = load_rows(args.store, args.campaign)
    flops = load_model_flops(args.models_root)
    results = score_chips(catalog, profile, rows, flops=flops, draws=args.draws, seed=args.seed)
    if args.format == "json":
        print(jsonio.dumps([r.to_json() for r in results], indent=2))
    else:
        import io
        from lab.commands.tables import terminal_width
        from lab.core.textsafe import clean
        buf = io.StringIO()  # names in notes and reasons come from files: shown as text
        render_table(results, profile, note, args.draws, args.seed, wide=args.wide,
                     width=terminal_width(sys.stdout), file=buf)
        sys.stdout.write(clean(buf.getvalue()))
    return 0
