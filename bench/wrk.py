"""Running `wrk` on the client core and reading its report."""

import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.servers import CLIENT_CPU, log
from bench.targets import BENCH_DIR

SCRIPTS = BENCH_DIR / "wrk"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class WrkResult:
    target: str
    requests_per_second: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    # CPU time the server (and, on PostgreSQL, its backends) spent per request: a figure
    # that other load on the machine disturbs far less than requests per second.
    cpu_us_per_request: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse(target: str, report: str) -> WrkResult:
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", report, re.MULTILINE))
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    non_2xx = re.search(r"BENCH non2xx=(\d+)", report)
    return WrkResult(
        target=target,
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1)),  # type: ignore[union-attr]
        requests=int(re.search(r"(\d+) requests in", report).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(percentiles["50"]),
        p90_ms=_ms(percentiles["90"]),
        p99_ms=_ms(percentiles["99"]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of these processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(
    target: str,
    base_url: str,
    script: str,
    script_args: list[str],
    *,
    connections: int,
    seconds: int,
    server_pids: Callable[[], Iterable[int]] = tuple,
) -> WrkResult:
    """One `wrk` run (one thread, on the client core) with a Lua script from bench/wrk/."""
    command = [
        "taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
        "--latency", "--timeout", "10s", "-s", str(SCRIPTS / script), base_url, "--",
        *script_args,
    ]  # fmt: skip
    pids = list(server_pids())
    cpu_before = cpu_seconds(pids)
    report = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    cpu = cpu_seconds(pids) - cpu_before
    try:
        result = parse(target, report)
    except (AttributeError, KeyError, ValueError) as exc:
        raise RuntimeError(f"{target}: cannot read wrk's report:\n{report}") from exc
    if pids and result.requests:
        result.cpu_us_per_request = cpu / result.requests * 1e6
    cpu_text = f", {result.cpu_us_per_request:,.0f} us CPU/req" if result.cpu_us_per_request else ""
    log(
        f"{target}: {result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms,"
        f" p99 {result.p99_ms:.2f} ms ({result.requests} requests{cpu_text})"
    )
    if result.non_2xx or result.socket_errors:
        raise RuntimeError(f"{target}: {result.non_2xx} non-2xx answers, report:\n{report}")
    return result


def write_paths(path: Path, paths: list[str]) -> Path:
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(paths) + "\n")
    return path
