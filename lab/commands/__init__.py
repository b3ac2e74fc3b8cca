"""CLI subcommands: each module here defines `register(subparsers)`; cli.py discovers them.

Why discovery: every capability owns its own command module, so adding one never edits a shared
dispatch table.
"""
