"""Seeded generators of malformed inputs for every file and flag the lab reads (tests/test_fuzz_inputs.py).

Why a generator per input kind: each kind has its own valid base (a real devices.yaml, campaign,
catalog, profiles file, zoo, PIR model, meta.json, results CSV, meter CSV, store), and the
mutations that broke the lab before (alias bombs, deep nesting, tags, NaN/inf, huge fields,
wrong types, markup and control characters in names, paths that escape) are applied to it.
Everything is derived from `random.Random(seed)`: a failing case is reproduced by its seed.
"""
from __future__ import annotations

import contextlib
import io
import json
import random
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# values that have broken parsers and renderers: names, numbers, sizes
EVIL_STR = ["[/]", "[bold]x[/bold]", "[red", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "a\rb",
            "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "../../X", "/etc/passwd", "",
            " ", "\u202eevil", "x" * 300, "é" * 100, "\x00nul", "a\nb", "%s%n", "{0}", "<script>"]
TAG_MISFITS = ["!!bool foo", "!!bool", "!!int", "!!float", "!!timestamp abc", "!!timestamp",
               "!!null x", "!!str", "!!map x", "!!seq x", "!!bool [1]", "!!int {a: 1}"]
LONG_VALUE = "Q" * 100_000  # a value no error line may quote whole
EVIL_NUM = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, -1, 0, 10 ** 12,
            2 ** 64, -(2 ** 63), 1e-320, 0.5, 3]
EVIL_NUM_TEXT = ["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "1e999", "-1", "0", "-0",
                 "10**12", "1e12", "0x10", "", " ", "1,5", "∞", "9" * 400]


def evil_value(rng: random.Random) -> Any:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice(EVIL_STR)
    if kind == 1:
        return rng.choice(EVIL_NUM)
    if kind == 2:
        return None
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return [rng.choice(EVIL_STR + [1, None])]
    if kind == 5:
        return {rng.choice(["a", "id", "x"]): rng.choice(EVIL_STR + [1])}
    if kind == 6:
        return "y" * rng.choice([70_000, 200_000])
    if kind == 7:
        return []
    return {}


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return doc


def mutate_doc(doc: Any, rng: random.Random, n: int | None = None) -> Any:
    """Replace 1-3 random nodes of a parsed document by evil values (or drop a key)."""
    import copy
    doc = copy.deepcopy(doc)
    for _ in range(n or rng.randint(1, 3)):
        paths = _paths(doc)
        path = rng.choice(paths)
        if path and rng.random() < 0.15 and isinstance(_get(doc, path[:-1]), dict):
            del _get(doc, path[:-1])[path[-1]]
            continue
        if rng.random() < 0.15:  # two values swapped (a zoo's `builder` and `arch`, ...)
            doc = swap_values(doc, rng)
            continue
        doc = _set(doc, path, evil_value(rng))
    return doc


def swap_values(doc: Any, rng: random.Random) -> Any:
    """Two nodes of the document trade values, one possibly inside the other (a mapping and one
    of its own fields: `builder: {arch: x}` -> `builder: x`, `arch: {arch: x}`...)."""
    import copy
    paths = [p for p in _paths(doc) if p]
    if len(paths) < 2:
        return doc
    a, b = rng.sample(paths, 2)
    va, vb = copy.deepcopy(_get(doc, a)), copy.deepcopy(_get(doc, b))
    doc = _set(doc, a, vb)
    try:
        doc = _set(doc, b, va)
    except (KeyError, IndexError, TypeError):  # b lived inside a's old value
        pass
    return doc


def long_value_docs(doc: Any, value: str = LONG_VALUE):
    """(path, doc) with one node replaced by `value`, for every node, and every mapping key
    renamed to `value`: the class "an error echoes the whole bad input" in each place."""
    import copy
    for path in _paths(doc):
        if not path:
            continue
        yield path, _set(copy.deepcopy(doc), path, value)
        parent = _get(doc, path[:-1])
        if isinstance(parent, dict):
            d = copy.deepcopy(doc)
            holder = _get(d, path[:-1])
            holder[value] = holder.pop(path[-1])
            yield path + ("<key>",), d


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PARSED: dict[str, Any] = {}


def yaml_dump(doc: Any) -> str:
    """YAML text of a document whose floats may be NaN/inf (PyYAML writes .nan / .inf)."""
    return yaml.dump(doc, Dumper=_DUMPER, allow_unicode=True, sort_keys=False, width=10 ** 6)


def _parsed(text: str) -> Any:
    if text not in _PARSED:
        _PARSED[text] = yaml.load(text, Loader=_LOADER)
    return _PARSED[text]


def text_mutation(text: str, rng: random.Random) -> str:
    """Byte-level damage: truncation, insertion, deletion, swapped characters."""
    if not text:
        return "\x00"
    op = rng.randrange(5)
    i = rng.randrange(len(text))
    if op == 0:
        return text[:i]
    if op == 1:
        return text[:i] + rng.choice(["{", "[", "]", "}", ":", "- ", "&a ", "*a", "!", "\t",
                                      "'", '"', "\x00", "\ufeff", "\n  ", "#"]) + text[i:]
    if op == 2:
        j = min(len(text), i + rng.randint(1, 40))
        return text[:i] + text[j:]
    if op == 3:
        return text + "\n" + text  # duplicated keys / documents
    return "".join(rng.sample(list(text[:200]), min(len(text), 200))) + text[200:]


def yaml_special(rng: random.Random, key: str = "x") -> str:
    """Whole YAML documents that attack the loader itself."""
    k = rng.randrange(13)
    if k == 0:  # billion laughs
        lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i in range(1, 10):
            lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
        return "\n".join(lines) + f"\n{key}: *a9\n"
    if k == 2:
        d = rng.choice([100, 1000, 5000, 20000])
        return f"{key}: " + "[" * d + "]" * d + "\n"
    if k == 3:
        d = rng.choice([100, 500, 2000])
        return "".join("  " * i + f"k{i}:\n" for i in range(d)) + "  " * d + "v\n"
    if k == 9:
        return f"{key}: {'9' * rng.choice([30, 5000])}\n"
    if k == 11:  # an explicit standard tag on text it cannot construct (KeyError, IndexError...)
        return f"{key}: {rng.choice(TAG_MISFITS)}\n"
    values = {1: "&r [*r]",  # recursive alias
              4: "!foo bar", 5: "!!int abc", 6: "!!python/object/apply:os.system ['true']",
              7: "!!binary aGVsbG8=", 8: "!!set {a, b}", 10: "[.nan, .inf, -.inf, 1e999]"}
    if k in values:
        return f"{key}: {values[k]}\n"
    return "\xff\xfe garbage \x00\x01"


def yaml_case(base_text: str, rng: random.Random, top_key: str) -> str:
    """One malformed variant of a valid YAML file."""
    r = rng.random()
    if r < 0.45:
        return yaml_dump(mutate_doc(_parsed(base_text), rng))
    if r < 0.7:
        return text_mutation(base_text, rng)
    if r < 0.9:
        return yaml_special(rng, top_key)
    special = yaml_special(rng, "evil")  # an attack inside an otherwise valid document
    return base_text + "\n" + special if rng.random() < 0.5 else special + base_text


# ------------------------------------------------------------------------------ PIR model JSON
def pir_doc(rng: random.Random) -> dict:
    def tt(shape):
        return {"#": "0.t_dtensor", "D": [{"#": "0.t_f32", "D": []}, shape, "NCHW", [], 0]}
    ops = [
        {"#": "1.data", "A": [{"AT": {"#": "0.a_str", "D": "x"}, "N": "name"},
                              {"AT": {"#": "1.a_intarray", "D": [-1, 3, 8, 8]}, "N": "shape"}],
         "I": [], "O": [{"%": 1, "TT": tt([-1, 3, 8, 8])}]},
        {"#": "p", "A": [0, 1, 1, "w"], "O": {"%": 2, "TT": tt([4, 3, 3, 3])}, "OA": [1, 0, 1]},
        {"#": "1.conv2d", "A": [], "I": [{"%": 1}, {"%": 2}], "O": [{"%": 3, "TT": tt([-1, 4, 8, 8])}]},
        {"#": "1.rnn", "A": [{"AT": {"#": "0.a_i32", "D": 8}, "N": "hidden_size"},
                             {"AT": {"#": "0.a_i32", "D": 1}, "N": "num_layers"}],
         "I": [{"%": 3}], "O": [{"%": 4, "TT": tt([2, 1, 8])}]},
        {"#": "1.fetch", "A": [{"AT": {"#": "0.a_str", "D": "out"}, "N": "name"}], "I": [{"%": 4}],
         "O": [{"%": 5, "TT": tt([2, 1, 8])}]},
    ]
    return {"base_code": {"magic": "pir", "trainable": True, "version": 4},
            "program": {"regions": [{"#": "region_0", "blocks": [
                {"#": "block_0", "args": [], "ops": ops}]}]}}


def model_json_case(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        doc = mutate_doc(pir_doc(rng), rng)
        return json.dumps(doc)  # NaN/Infinity written raw, as Python does
    if r < 0.6:
        d = rng.choice([500, 1000, 5000, 100000])
        return "[" * d + "]" * d
    if r < 0.7:
        doc = pir_doc(rng)
        deep: Any = {"#": "1.while", "regions": []}
        cur = deep
        for _ in range(rng.choice([60, 150])):  # 4 JSON levels each: 240 / 600 deep
            nxt = {"#": "1.while", "regions": []}
            cur["regions"] = [{"blocks": [{"ops": [nxt]}]}]
            cur = nxt
        doc["program"]["regions"][0]["blocks"][0]["ops"].append(deep)
        return json.dumps(doc)
    if r < 0.8:
        doc = pir_doc(rng)
        op = rng.choice(doc["program"]["regions"][0]["blocks"][0]["ops"])
        op["A"] = [{"N": rng.choice(["num_layers", "hidden_size", "groups", "x_num_col_dims",
                                     "transpose_x", "shape"]),
                    "AT": {"D": rng.choice([10 ** 12, -5, "abc", [1, "a"], None, 1e308, [[1]]])}}]
        return json.dumps(doc)
    return rng.choice(["", "{}", "[]", "null", "1", '"x"', "{", "NaN", '{"program": []}',
                       '{"base_code": {"magic": "pir"}}', '{"base_code": {"magic": "pir"}, "program": {"regions": {}}}',
                       '{"base_code": {"magic": "pir"}, "program": {"regions": [[1]]}}',
                       '{"base_code": {"magic": "pir"}, "program": {"regions": [{"blocks": [{"ops": [[1]]}]}]}}',
                       "\xff\xfe", "1e999"])


# ------------------------------------------------------------------------------------ meta.json
def meta_doc() -> dict:
    return {"schema": "hwlab.model/1", "id": "fake", "sha256": "00" * 32, "format": "json",
            "source": "user", "files": {}, "flops": 1000, "params": 10,
            "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32",
                        "run_shape": [1, 3, 8, 8]}]}


def meta_case(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return json.dumps(mutate_doc(meta_doc(), rng))
    if r < 0.7:
        return json.dumps([meta_doc()])
    if r < 0.8:
        d = rng.choice([1000, 3000])
        return '{"a": ' + "[" * d + "]" * d + "}"
    if r < 0.9:
        doc = meta_doc()
        doc["files"] = {rng.choice(["../../etc/passwd", "/etc/passwd", "x"]): "00"}
        doc["model_file"] = rng.choice(["../../../x.json", "/abs.json", 5])
        return json.dumps(doc)
    return rng.choice(["", "[]", "null", "{", '{"flops": 1e999}', '{"flops": NaN}', "\x00"])


# ---------------------------------------------------------------------------------- results CSV
RESULTS_HEADER = ["device", "chip", "model", "backend", "processor", "precision", "threads",
                  "batch", "p50_ms", "p90_ms", "mean_ms", "load_ms", "first_ms",
                  "energy_mj_per_inf", "peak_rss_mb", "source"]


def results_rows(rng: random.Random, n: int = 4) -> list[list[str]]:
    rows = []
    for i in range(n):
        p50 = round(rng.uniform(1, 50), 3)
        rows.append([f"dev{i % 2}", rng.choice(["kirin990", "rk3588", "generic-x86-cpu"]),
                     f"m{i}", "", rng.choice(["cpu", "aipu", "gpu"]), "fp32", str(1 + i % 4), "1",
                     str(p50), str(round(p50 * 1.2, 3)), "", str(100 + i), str(200 + i), "", "",
                     "vendor"])
    return rows


def _csv_text(rows: list[list[str]]) -> str:
    import csv
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def results_csv_case(rng: random.Random) -> str:
    rows = [list(RESULTS_HEADER)] + results_rows(rng)
    r = rng.random()
    if r < 0.6:
        for _ in range(rng.randint(1, 3)):
            i, j = rng.randrange(len(rows)), rng.randrange(len(RESULTS_HEADER))
            rows[i][j] = str(rng.choice(EVIL_STR + EVIL_NUM_TEXT + ["x" * 200_000]))
        return _csv_text(rows)
    if r < 0.75:
        row = rng.choice(rows[1:])
        row.append(rng.choice(["extra", "=1+1"]))
        if rng.random() < 0.5:
            del rows[0][rng.randrange(len(rows[0]))]
        return _csv_text(rows)
    if r < 0.9:
        return text_mutation(_csv_text(rows), rng)
    return rng.choice(["", "\ufeff", "\x00\x00", "device\n", '"unterminated\n', "\xff\xfe\x00"])


# ----------------------------------------------------------------------------------- meter CSV
def meter_csv_case(rng: random.Random, t0: float) -> str:
    t = [t0 + 0.1 * i for i in range(60)]
    va = rng.random() < 0.3
    rows = [["timestamp", "V", "A"] if va else ["timestamp", "W"]]
    rows += [[f"{x:.3f}", "5.0", "0.4"] if va else [f"{x:.3f}", f"{2 + (i % 3) * 0.1:.2f}"]
             for i, x in enumerate(t)]
    r = rng.random()
    if r < 0.55:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(1, len(rows))
            j = rng.randrange(len(rows[i]))
            rows[i][j] = rng.choice(EVIL_NUM_TEXT + ["-5", "1e308", "x" * 200_000, "2020-13-45",
                                                     "2024-01-01T00:00:00Z", "9999-12-31"])
        return _csv_text(rows)
    if r < 0.7:
        if rng.random() < 0.5:
            rows = rows[1:]
        rows[rng.randrange(len(rows))].append("7")
        return _csv_text(rows)
    if r < 0.85:
        return text_mutation(_csv_text(rows), rng)
    return rng.choice(["", "timestamp,W\n", "a,b,c,d\n1,2,3,4\n", "\x00,\x00\n", "1,2\n1,2\n",
                       "timestamp,W\n" + '"' + "x" * 300_000 + '",1\n'])


# --------------------------------------------------------------------------------- the CLI run
@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    crash: str | None  # a traceback that escaped lab.cli.main


def run_cli(argv: list[str]) -> Outcome:
    """lab.cli.main in this process with captured stdout/stderr (a real entry point, fast)."""
    from lab.cli import main
    out, err = io.StringIO(), io.StringIO()
    crash = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - what the fuzz suite exists to find
            code, crash = -1, traceback.format_exc()
    return Outcome(argv, code, out.getvalue(), err.getvalue(), crash)


ERROR_LINE_MAX = 2100  # textsafe.LINE_LIMIT + "lab: error: " and escapes
_LONG_ECHO = re.compile(r"(.)\1{220,}")  # every long fuzz value repeats one character


def _strict(name: str):
    raise ValueError(f"non-strict JSON constant {name}")


def problems(o: Outcome, *, json_out: bool = False, csv_out: bool = False) -> list[str]:
    """Everything wrong with one outcome (empty = fine)."""
    bad = []
    if o.crash:
        return [f"traceback: {o.crash.strip().splitlines()[-1]}"]
    if o.code not in (0, 1, 2):
        bad.append(f"exit {o.code}")
    if "Traceback" in o.err or "Traceback" in o.out:
        bad.append("'Traceback' printed")
    errors = [ln for ln in o.err.splitlines() if ln.startswith("lab: error")]
    if o.code == 2:
        if len(errors) != 1:
            bad.append(f"{len(errors)} error lines for exit 2: {o.err[-300:]!r}")
        elif not o.err.rstrip("\n").endswith(errors[0]):
            bad.append("the error line is not the last line")
    for line in errors:
        if len(line) > ERROR_LINE_MAX or _LONG_ECHO.search(line):
            bad.append(f"an error line of {len(line)} chars quotes a long input whole: {line[:120]!r}")
    for stream, text in (("stdout", o.out), ("stderr", o.err)):
        if "\x1b" in text or "\x07" in text or "\u202e" in text:
            bad.append(f"control sequence on {stream}")
    if json_out and o.code == 0:
        try:
            json.loads(o.out, parse_constant=_strict)
        except ValueError as exc:
            bad.append(f"stdout is not strict JSON: {exc}")
    if csv_out and o.code == 0:
        import csv
        for row in csv.reader(io.StringIO(o.out)):
            for cell in row:
                if cell[:1] in ("=", "+", "@") or (cell[:1] == "-" and not _is_number(cell)):
                    bad.append(f"formula-leading CSV cell {cell[:30]!r}")
    return bad


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
