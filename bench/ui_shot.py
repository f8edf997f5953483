"""Screenshots of the MLflow UI against a store from a real run (``make ui-shot``).

Starts ``mlflow ui`` on loopback, opens the experiment (its runs) and one trace of it in
headless Chromium (Debian's ``chromium``), and saves the pages as PNG files.

    python bench/ui_shot.py --store sqlite:///bench/mlflow-round2.db --experiment scale --out docs
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:g} s")


def shoot(chromium: str, url: str, path: Path, size: str = "1500,950") -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                "--virtual-time-budget=20000",
                f"--screenshot={path}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="MLflow backend store URI")
    parser.add_argument("--experiment", default="scale", help="experiment to show")
    parser.add_argument("--out", default="docs", help="folder for the PNG files")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    import mlflow

    mlflow.set_tracking_uri(args.store)
    experiment = mlflow.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"{args.store} has no experiment {args.experiment!r}")
    traces = mlflow.search_traces(
        locations=[experiment.experiment_id], return_type="list", max_results=1
    )
    port = free_port()
    command = ["mlflow", "ui", "--backend-store-uri", args.store, "--port", str(port)]
    ui = subprocess.Popen(
        [sys.executable, "-m", *command, "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/health")
        shots = {"mlflow-runs.png": f"{base}/#/experiments/{experiment.experiment_id}/runs"}
        if traces:
            trace_id = traces[0].info.trace_id
            shots["mlflow-trace.png"] = (
                f"{base}/#/experiments/{experiment.experiment_id}/traces"
                f"?selectedEvaluationId={trace_id}"
            )
        for name, url in shots.items():
            shoot(chromium, url, out / name)
            print(f"wrote {out / name} ({url})")
    finally:
        ui.terminate()
        try:
            ui.wait(10)
        except subprocess.TimeoutExpired:  # its workers can outlive a polite stop
            ui.kill()
            ui.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
