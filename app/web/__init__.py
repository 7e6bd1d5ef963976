"""The rights holders' pages: the takedown form and the status page (server-rendered)."""
