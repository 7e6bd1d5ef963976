"""Cursors of the operators' lists (requests, audit rows, blocks)."""

from datetime import datetime

from app.cursor import moment_part, parse_int, parse_moment, seal, unseal

_KEY = b"byline-takedowns-cursor-v1"


def encode_received(received_at: datetime, takedown_id: str) -> str:
    """A cursor after the request (received_at, id)."""
    return seal(_KEY, moment_part(received_at), takedown_id)


def decode_received(cursor: str) -> tuple[datetime, str]:
    micros, takedown_id = unseal(_KEY, cursor, 2)
    return parse_moment(micros), takedown_id


def encode_id(row_id: int) -> str:
    """A cursor after the row with this id."""
    return seal(_KEY, str(row_id))


def decode_id(cursor: str) -> int:
    (row_id,) = unseal(_KEY, cursor, 1)
    return parse_int(row_id)
