"""Sampling profile of a running daemon for the length of one benchmark step (`run.py --profile`).

py-spy attaches to the daemon's pid, pauses it for each sample (100 a second by default: the profiled step
is not one of the measured ones) and writes collapsed stacks when interrupted. Paused, py-spy can ask the
kernel whether each thread was running, so idle threads (the loop waiting in epoll, the activity writer
waiting on its queue or for the GIL) are left out and the samples are where the process spent CPU; with
`--nonblocking` it has to guess from the function name and counts a thread blocked in `sendto` or on the
GIL as busy (py-spy issue #480). Own time of a function is the samples where it is the innermost
frame; total time the samples where it is anywhere on the stack (counted once per sample).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_COUNT = re.compile(r"^(.*)\s(\d+)$")
_NOT_A_FUNCTION = re.compile(r"^(thread|process) ")


def py_spy_path() -> str | None:
    """py-spy from the environment running the harness (the `bench` extra), else from PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass(frozen=True)
class FunctionTime:
    name: str  # "function (file)"
    own: int
    total: int


@dataclass(frozen=True)
class Profile:
    samples: int
    functions: list[FunctionTime]


def _frame_name(frame: str) -> str:
    """'handle (edge/call/proxy.py:412)' -> 'handle (edge/call/proxy.py)': aggregate a function's lines."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def parse_collapsed(text: str) -> Profile:
    """Collapsed stacks, one `frame;frame;...;innermost COUNT` per line (py-spy --format raw).

    Leading frames that name a thread or a process (`thread (TID)` with --threads) are not functions
    and are skipped."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in text.splitlines():
        m = _COUNT.match(line.strip())
        if not m:
            continue
        count = int(m.group(2))
        frames = [_frame_name(f) for f in m.group(1).split(";") if f.strip() and not _NOT_A_FUNCTION.match(f.strip())]
        if not frames:
            continue
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            total[name] = total.get(name, 0) + count
    functions = [FunctionTime(name, own.get(name, 0), t) for name, t in total.items()]
    functions.sort(key=lambda f: (-f.own, -f.total, f.name))
    return Profile(samples, functions)


def render(profile: Profile, top: int = 25, title: str = "") -> str:
    lines = ["", title or f"profile: top {top} functions by own time", ""]
    if not profile.samples:
        return "\n".join(lines + ["no samples (was the daemon busy? did py-spy attach?)"]) + "\n"
    lines.append(f"{'own %':>6}  {'total %':>7}  {'samples':>7}  function (file)")
    for f in profile.functions[:top]:
        lines.append(f"{100 * f.own / profile.samples:>6.1f}  {100 * f.total / profile.samples:>7.1f}  "
                     f"{f.own:>7}  {f.name}")
    lines.append(f"({profile.samples} samples of busy threads)")
    return "\n".join(lines) + "\n"


class Sampler:
    """py-spy attached to one pid from `start()` until `stop()`; the collapsed stacks land in `path`."""

    def __init__(self, pid: int, path: Path, rate: int = 100) -> None:
        exe = py_spy_path()
        if exe is None:
            raise RuntimeError("py-spy is not installed (make bench installs the bench extra)")
        self.path = path
        self.log = path.with_suffix(".log")
        self.cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                    "--threads", "--output", str(path)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_attached(self, timeout: float = 10.0) -> None:
        """Return once py-spy says it is sampling; raise if it exited or `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while b"Sampling process" not in (self.log.read_bytes() if self.log.exists() else b""):
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"py-spy did not attach: {self.log.read_text(errors='replace')[-1000:]}")
            time.sleep(0.05)

    def stop(self, wait: float = 20.0) -> Profile:
        """SIGINT makes py-spy write what it sampled; SIGKILL if it does not finish within `wait`."""
        if self.proc is None:
            return Profile(0, [])
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if not self.path.exists():
            raise RuntimeError(f"py-spy wrote no profile: {self.log.read_text(errors='replace')[-1000:]}")
        return parse_collapsed(self.path.read_text(errors="replace"))
