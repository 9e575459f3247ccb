"""MkDocs hooks: the repository files that the README links to become part of the site, and the
docstrings' Sphinx roles are shown as the names they mark.

The README is the site's home page (``docs/index.md`` includes it), and its links to
``LICENSE`` and to the benchmark and stress-test READMEs are relative to the repository root.
They are added to the site as they are, so the links work on both, and ``mkdocs build --strict``
still fails on any other link to a file that does not exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

# Linked from README.md, benchmarks/README.md and stress/README.md.
REPOSITORY_FILES = ("LICENSE", "benchmarks/README.md", "stress/README.md")


def on_files(files: Files, config: Any) -> Files:
    root = Path(config["config_file_path"]).parent
    for path in REPOSITORY_FILES:
        files.append(
            File(
                path,
                src_dir=str(root),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


# The docstrings mark names the Sphinx way (:class:`~pkg.mod.Name`), which mkdocstrings renders as
# the role's text followed by the name in code. The role goes, and a leading ``~`` keeps only the
# last component of the dotted name, as Sphinx shows it.
_ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj):(<code>)")
_TILDE = re.compile(r"<code>~(?:[\w.]+\.)?(\w+)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    return _TILDE.sub(r"<code>\1</code>", _ROLE.sub(r"\1", html))
