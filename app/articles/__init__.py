"""Articles: ingest with attribution, sanitising, search and fast reads."""
