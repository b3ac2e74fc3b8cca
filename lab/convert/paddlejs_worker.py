"""Child process: run paddlejsconverter's convertModel behind the fluid shim.

Usage (internal, started by lab.convert.paddlejs): python -m lab.convert.paddlejs_worker
--modelPath M --paramPath P --outputDir D. Needs FLAGS_enable_pir_api=0 in the environment
(set by the parent) so that paddle.static loads the legacy .pdmodel as a legacy Program.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from lab.convert import fluid_shim
    fluid_shim.install()
    import convertModel  # paddlejsconverter 1.0.8 (a top-level module of that distribution)
    sys.argv = ["convertModel.py"] + list(argv)
    try:
        convertModel.main()
    except SystemExit as exc:  # the converter sys.exit(1)s after printing its traceback
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
