"""The access log's durations read as json.dumps writes `round(seconds * 1000, 2)`."""

import json
import random

from app.observability import _milliseconds


def test_durations_are_what_json_dumps_writes_of_the_rounded_milliseconds() -> None:
    rng = random.Random(11)
    durations = [0.0, 0.000004999, 0.000005, 0.000015, 0.000125, 0.0015, 1.5, 12.345678, 300.0]
    durations += [10 ** rng.uniform(-8, 3) for _ in range(20_000)]
    # Exactly half a hundredth of a millisecond, where rounding could go either way.
    durations += [(rng.randrange(10**7) + 0.5) / 100_000 for _ in range(20_000)]
    for seconds in durations:
        assert _milliseconds(seconds) == json.dumps(round(seconds * 1000, 2)), seconds
