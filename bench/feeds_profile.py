"""Where a byline feeds worker's cycle goes, from py-spy's collapsed stacks (`--format raw`)
of one worker process: only the samples inside `run_once` (not start-up, not waiting for
the next command), by category and by function (inclusive and self)."""

import re
from collections import Counter
from pathlib import Path

from bench.profile import IDLE_LEAVES

# The innermost frame that matches decides a sample's category (first rule wins).
CATEGORIES = (
    ("feedparser: parsing the feed", r"\((feedparser|sgmllib)"),
    ("HTML sanitising and text (nh3, app/articles/sanitise)", r"\((app/articles/sanitise\.py|nh3)"),
    ("database driver: executing, fetching", r"\((psycopg\w*|sqlite3)/"),
    ("SQLAlchemy: statements, ORM, results", r"\(sqlalchemy/"),
    ("pydantic: validation", r"\(pydantic"),
    ("logging", r"\((logging/|app/observability\.py)"),
    ("HTTP client (httpx, httpcore, h11)", r"\((httpx|httpcore|h11)/"),
    ("asyncio event loop", r"\(asyncio/"),
    ("articles service: prepare, store (app/articles)", r"\(app/articles/"),
    ("feeds code (app/feeds)", r"\(app/feeds/"),
    ("jobs, outbound guard, other app code", r"\(app/"),
)


def summarise_cycle(raw: Path, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if "run_once (" not in stack:
            continue
        count = int(count_text)
        paths = stack.split(";")
        frames = [re.sub(r" \((.*/)?(site-packages/)?", " (", f) for f in paths]
        if frames[-1].startswith(IDLE_LEAVES):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        categories[_category(paths)] += count
    if not total:
        return f"{raw}: no samples inside run_once"
    lines = [f"{total} samples of 10 ms inside run_once (waits for sockets left out)", ""]
    lines += ["by category:"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in categories.most_common()]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def _category(paths: list[str]) -> str:
    for path in reversed(paths):
        for name, pattern in CATEGORIES:
            if re.search(pattern, path):
                return name
    return "other (interpreter, standard library)"
