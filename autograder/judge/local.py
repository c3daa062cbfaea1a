"""run_probe without a sandbox: for the judge's own tests and the documented ``--no-sandbox`` fallback.

The probe still runs in a separate process on the grading view, so scores are
computed exactly as in the sandbox; what is lost is isolation (the learner's
code can read and write what the instructor's user can, and reach the network).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .probe_io import install_probe, read_probe_output
from .view import build_view


def run_probe_locally(module_path: Path, request: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run the probe on ``module_path`` for ``request`` in a plain subprocess (no isolation)."""
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        tmp_path = Path(tmp)
        view = build_view(request["assignment"], tmp_path / "view")
        run = tmp_path / "run"
        run.mkdir()
        script = install_probe(run)
        shutil.copy(module_path, run / "learner.py")
        env = {**os.environ, "PYTHONPATH": str(view), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
               "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run([sys.executable, str(script), str(run / "learner.py")], cwd=run,
                                  input=json.dumps(request).encode(), capture_output=True, timeout=timeout, env=env)
            return read_probe_output(done.stdout, done.returncode, False, done.stderr, key=request.get("key"))
        except subprocess.TimeoutExpired as exc:
            return read_probe_output(exc.stdout or b"", None, True, exc.stderr or b"", key=request.get("key"))
