"""Dead code: vulture over lab/ finds nothing that is not in vulture_whitelist.py, and every entry
there says why it must stay.

Why vulture at its default confidence (60): that is the level that reports unused functions,
methods, classes, attributes and record fields (80 and up reports only unused imports, arguments
and unreachable code, where most dead code is not). What it cannot see, it is told in the
whitelist: names called by a library or by code on the device (argparse, sqlite3, paramiko and
adb-shell callbacks, http.server hooks), and record fields read whole by `dataclasses.asdict` /
`fields` into JSON and the store. Code only the tests use is dead: delete it, do not whitelist it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "lab"
WHITELIST = Path(__file__).with_name("vulture_whitelist.py")
MIN_CONFIDENCE = 60


def _entries() -> list[tuple[int, str, str]]:
    """(line, whitelisted name, comment) of every entry: one `_.name  # why` expression per line."""
    out = []
    lines = WHITELIST.read_text(encoding="utf-8").splitlines()
    for node in ast.parse(WHITELIST.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Attribute, ast.Name)):
            name = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
            text = lines[node.lineno - 1]
            comment = text.split("#", 1)[1].strip() if "#" in text else ""
            out.append((node.lineno, name, comment))
    return out


def test_vulture_finds_no_dead_code_in_lab():
    vulture = pytest.importorskip("vulture", reason="vulture is not installed (pip install -e '.[test]')")
    v = vulture.Vulture(verbose=False)
    v.scavenge([str(LAB), str(WHITELIST)])
    found = [f"{Path(item.filename).resolve().relative_to(ROOT)}:{item.first_lineno}: {item.message} "
             f"({item.confidence}% confidence)" for item in v.get_unused_code(min_confidence=MIN_CONFIDENCE)]
    if found:
        pytest.fail("unused code (delete it, or add it to tests/architecture/vulture_whitelist.py with the "
                    "reason it must stay):\n" + "\n".join(found), pytrace=False)


def test_every_whitelist_entry_says_why_and_still_names_code_in_lab():
    entries = _entries()
    assert entries, "the whitelist has no entries: was it rewritten in another format?"
    no_reason = [f"line {n}: {name}" for n, name, why in entries if len(why) < 10]
    if no_reason:
        pytest.fail("whitelist entries without a reason (`_.name  # why it must stay`):\n" + "\n".join(no_reason),
                    pytrace=False)
    source = "\n".join(p.read_text(encoding="utf-8") for p in LAB.rglob("*.py"))
    stale = [f"line {n}: {name}" for n, name, _ in entries if not re.search(rf"\b{re.escape(name)}\b", source)]
    if stale:
        pytest.fail("whitelist entries that name nothing in lab/ any more (remove them):\n" + "\n".join(stale),
                    pytrace=False)
