"""Build the course site: ``.venv/bin/python book/build.py`` (what ``make book`` runs).

One command, strict: Jupyter Book runs with warnings as errors, nitpicky
references and --keep-going (so one run lists every problem). The book's own
pages execute against gpipe_core with a cache in ``_build/.jupyter_cache``, so
a rebuild re-runs only the pages whose code changed (and re-renders them all); the learner notebooks are shown as
nbgrader released them, unexecuted (``execute.exclude_patterns`` in _config.yml).

Before the build it refreshes the launchable notebook beside every executed page
(``book/launch.py``: Colab and Binder open those), and names the ones that
changed, to be committed with their page.

Every file _toc.yml names must exist. While the assignment notebooks are still
being written, ``--skip-missing`` builds with the ones that exist (and says
which it left out); ``--fresh`` drops the site and the execution cache first,
to time a build from scratch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
SUFFIXES = (".md", ".ipynb")


def toc_files(toc: object) -> list[str]:
    """Every ``file:`` and ``root:`` entry of a parsed _toc.yml, in order."""
    found: list[str] = []
    if isinstance(toc, dict):
        for key, value in toc.items():
            if key in ("file", "root") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(toc_files(value))
    elif isinstance(toc, list):
        for item in toc:
            found.extend(toc_files(item))
    return found


def exists(entry: str) -> bool:
    path = ROOT / entry
    return path.is_file() or any(path.with_name(path.name + s).is_file() for s in SUFFIXES)


def prune(toc: object, missing: set[str]) -> object:
    """The toc without the missing files (and without parts or sections left empty)."""
    if isinstance(toc, list):
        kept = [prune(item, missing) for item in toc]
        return [item for item in kept if item is not None]
    if isinstance(toc, dict):
        if toc.get("file") in missing:
            return None
        out = {}
        for key, value in toc.items():
            value = prune(value, missing)
            if isinstance(value, list) and not value and key in ("parts", "chapters", "sections"):
                continue
            out[key] = value
        if "caption" in out and not any(k in out for k in ("chapters", "sections", "file")):
            return None
        return out
    return toc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-missing", action="store_true",
                        help="build without the toc entries whose files do not exist yet (named on stderr)")
    parser.add_argument("--fresh", action="store_true", help="remove _build/html and the execution cache first")
    args = parser.parse_args(argv)

    import yaml
    from launch import write_notebooks

    toc_path = ROOT / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    missing = [f for f in toc_files(toc) if not exists(f)]
    extra: list[str] = []
    if missing:
        names = "\n  ".join(missing)
        if not args.skip_missing:
            print(f"_toc.yml names files that do not exist:\n  {names}\n"
                  "create them (the learner notebooks: nbgrader generate_assignment, see autograder/README.md) "
                  "or build a partial site with --skip-missing", file=sys.stderr)
            return 2
        print(f"building without these missing toc entries:\n  {names}", file=sys.stderr)
        BUILD.mkdir(exist_ok=True)
        pruned = BUILD / "_toc.partial.yml"
        pruned.write_text(yaml.safe_dump(prune(toc, set(missing)), sort_keys=False), encoding="utf-8")
        extra = ["--toc", str(pruned)]

    repo = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    for path in write_notebooks([f for f in toc_files(toc) if f not in missing], repo):
        print(f"wrote {path.relative_to(ROOT)} (the launchable copy of its page): commit it with the page",
              file=sys.stderr)

    if args.fresh:
        shutil.rmtree(BUILD / "html", ignore_errors=True)
        shutil.rmtree(BUILD / ".jupyter_cache", ignore_errors=True)
        shutil.rmtree(BUILD / ".doctrees", ignore_errors=True)

    bindir = Path(sys.executable).parent
    jb = bindir / "jupyter-book"
    # --all: read and write every page each time (executed pages still come from the cache), so a
    # change to the theme, the extension or the toc reaches every page and every warning is seen.
    command = [str(jb) if jb.exists() else "jupyter-book", "build", str(ROOT), "--all",
               "--warningiserror", "--nitpick", "--keep-going", *extra]
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - start
    verdict = "built" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
    print(f"book {verdict} in {elapsed:.0f} s: {BUILD / 'html' / 'index.html'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
