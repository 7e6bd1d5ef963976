"""Takedowns: filing, resolving, policy, operator review, audit, blocks and removal."""
