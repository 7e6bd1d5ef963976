"""The figures of the last run as a Markdown table (what bench/README.md quotes).

python -m bench.report
"""

import argparse
import json
from typing import Any

from bench.targets import ENGINES, OUT_DIR, bench_rows

TARGETS = {"vs_ceiling": 0.6, "vs_datasette": 3.0, "deep_vs_first_p50": 1.3, "ingest": 0.4}


def _load(name: str) -> dict[str, Any] | None:
    path = OUT_DIR / name
    return json.loads(path.read_text()) if path.exists() else None


def _mark(value: float, target: float, *, at_most: bool = False) -> str:
    met = value <= target if at_most else value >= target
    return "met" if met else "**missed**"


def table(rows: int) -> str:
    lines = [
        f"| {rows:,} articles | SQLite | PostgreSQL | target |",
        "|---|---|---|---|",
    ]
    reads = {engine: _load(f"reads-{engine}-{rows}.json") for engine in ENGINES}
    ingest = {engine: _load(f"ingest-{engine}-{rows}.json") for engine in ENGINES}

    def row(label: str, cell: Any, target: str = "") -> None:
        lines.append(f"| {label} | {cell('sqlite')} | {cell('postgres')} | {target} |")

    def through(engine: str, key: str) -> dict[str, Any] | None:
        result = reads[engine]
        return result["throughput"][key] if result and "throughput" in result else None

    def latency(engine: str) -> dict[str, Any] | None:
        result = reads[engine]
        return result["latency"] if result and "latency" in result else None

    def rate(name: str) -> Any:
        return lambda e: f"{t[name]:,.0f}" if (t := through(e, "req_per_s")) else "-"

    def cpu(name: str) -> Any:
        return lambda e: f"{t[name]:,.0f}" if (t := through(e, "cpu_us_per_request")) else "-"

    def ratio(key: str, target: float, suffix: str = "") -> Any:
        def cell(e: str) -> str:
            t = through(e, "ratios")
            return f"{t[key]:.2f}{suffix} ({_mark(t[key], target)})" if t else "-"

        return cell

    row("`GET /v1/articles/{id}` req/s", rate("byline"))
    row("ceiling (same document from memory) req/s", rate("ceiling"))
    row("ceiling, pre-encoded bytes req/s", rate("ceiling_bytes"))
    row("Datasette row JSON req/s (SQLite file)", rate("datasette_row"))
    row("Datasette canned query req/s (SQLite file)", rate("datasette_query"))
    row("(a) byline / ceiling", ratio("vs_ceiling", TARGETS["vs_ceiling"]), ">= 0.6")
    row(
        "(a) byline / pre-encoded ceiling",
        ratio("vs_ceiling_bytes", TARGETS["vs_ceiling"]),
        ">= 0.6",
    )
    row("(b) byline / Datasette", ratio("vs_datasette", TARGETS["vs_datasette"], "x"), ">= 3x")
    row("(a) by CPU time per request", ratio("cpu_vs_ceiling", TARGETS["vs_ceiling"]), "")
    row(
        "(a) pre-encoded, by CPU time per request",
        ratio("cpu_vs_ceiling_bytes", TARGETS["vs_ceiling"]),
        "",
    )
    row(
        "(b) by CPU time per request",
        ratio("cpu_vs_datasette", TARGETS["vs_datasette"], "x"),
        "",
    )
    row("CPU per request, byline (us)", cpu("byline"))
    row("CPU per request, ceiling (us)", cpu("ceiling"))
    row("CPU per request, pre-encoded ceiling (us)", cpu("ceiling_bytes"))
    row("CPU per request, Datasette query (us)", cpu("datasette_query"))

    def page(name: str) -> Any:
        def cell(e: str) -> str:
            lat = latency(e)
            return f"{lat[name]['p50_ms']:.1f} / {lat[name]['p99_ms']:.1f}" if lat else "-"

        return cell

    row("first page p50 / p99 (ms)", page("first_page"))
    row("page 50,000 deep p50 / p99 (ms)", page("deep_page"))

    def deep(e: str) -> str:
        lat = latency(e)
        if not lat:
            return "-"
        value = lat["deep_vs_first_p50"]
        return f"{value:.2f}x ({_mark(value, TARGETS['deep_vs_first_p50'], at_most=True)})"

    row("deep / first (p50)", deep, "<= 1.3x")
    row("`q` search p50 / p99 (ms)", page("search"), "p50 < 50 ms on PostgreSQL")

    def ingest_cell(key: str, fmt: str) -> Any:
        return lambda e: format(r[key], fmt) if (r := ingest[e]) else "-"

    row("batch ingest, API (articles/s)", ingest_cell("api_articles_per_s", ",.0f"))
    row("raw Core executemany (articles/s)", ingest_cell("raw_articles_per_s", ",.0f"))

    def ingest_ratio(e: str) -> str:
        r = ingest[e]
        return f"{r['ratio']:.2f} ({_mark(r['ratio'], TARGETS['ingest'])})" if r else "-"

    row("ingest ratio API / raw", ingest_ratio, ">= 0.4")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=bench_rows())
    print(table(parser.parse_args().rows))


if __name__ == "__main__":
    main()
