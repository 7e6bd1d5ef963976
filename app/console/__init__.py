"""The operators' console at /admin: server-rendered pages over the takedowns' services."""
