"""The fast path: the reads frontends make most (one resource by one key), served with as
little machinery per request as the answer allows.

One door: a domain declares a `KeyedRead` (its path and parameter, how to fetch the row, its
ETag, how to render it; the articles' are in app/articles/routes.py), and `FastPath.mount`,
called once by create_app, serves the declarations. `BYLINE_FAST_READS=false` serves the
same declarations as plain FastAPI routes on a session, answering byte for byte the same.

- keyed_reads.py: the declaration, the two ways of serving it, the fast route and answer;
- reader.py: where each engine runs a read (`RowReader`);
- rows.py: a read by key compiled once and run on a bare DBAPI cursor (`SingleRowRead`);
- libpq.py: PostgreSQL's reads on libpq from the event loop, batched;
- conditional.py: If-None-Match.

It relies on internals of FastAPI/Starlette (APIRoute, Route), SQLAlchemy (compiled
statements' binds and positions) and psycopg (libpq and its Transformer): pyproject.toml
pins each to one minor version. Figures: bench/README.md.
"""

from app.fastpath.keyed_reads import FastPath, KeyedRead
from app.fastpath.reader import RowReader
from app.fastpath.rows import SingleRowRead

__all__ = ["FastPath", "KeyedRead", "RowReader", "SingleRowRead"]
