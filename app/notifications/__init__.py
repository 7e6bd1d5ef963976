"""Notifications: e-mail to claimants and webhooks to frontends, from one outbox."""
