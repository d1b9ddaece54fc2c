"""Sphinx configuration for the geventp2p API reference (``make docs``).

Documents the installed package (``make docs`` runs inside .venv, where geventp2p is
installed in editable mode), so the docs see the same import paths as users.
"""

from __future__ import annotations

from importlib import metadata

project = "geventp2p"
author = "geventp2p developers"
copyright = "geventp2p developers; dual-licensed MIT OR Apache-2.0"
try:
    release = metadata.version("geventp2p")
except metadata.PackageNotFoundError:  # building from a tree that is not installed
    release = "unknown"
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

# Signatures stay short; the type hints go into each parameter's description.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}

# Names that only exist for type checkers, or that live in third-party packages
# without an inventory here, are left as plain text instead of failing -W.
nitpicky = False

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"geventp2p {release} API"
html_static_path: list[str] = []
