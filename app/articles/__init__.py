"""Articles: ingest with attribution, sanitising, search, and the reads by key (served by
app/fastpath)."""
