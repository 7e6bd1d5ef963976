"""Publishers who prove a domain with a DNS TXT record, as search consoles do, and the
publisher keys that proof earns."""
