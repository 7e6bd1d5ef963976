"""Rules every request's parameters obey, whatever the route."""

from fastapi import Request

from app.errors import FieldError, InvalidInput


async def refuse_nul_characters(request: Request) -> None:
    """422 for a NUL character in a path or query parameter. PostgreSQL cannot hold one in
    text, so a NUL that reached a query was a 500 there (found by fuzzing); it is refused on
    both engines, naming the parameter. (Bodies are validated by their models.) `async`
    because it runs on every request: a plain `def` would cost each one a thread-pool hop
    (half the CPU of a detail read, measured)."""
    errors = [
        FieldError(field=name, message="must not contain NUL characters")
        for name, value in [*request.path_params.items(), *request.query_params.multi_items()]
        if "\x00" in str(value)
    ]
    if errors:
        raise InvalidInput(errors)
