"""Runtimes, one module per runtime, registered by `Backend.runtime` in `lab/runtimes/registry.py`.

The package init imports nothing: a package that imports its own modules makes every module an
import cycle with it (DESIGN.md's layering check). See docs/architecture.md "How to add a runtime".
"""
