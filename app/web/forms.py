"""The takedown form: its fields turned into the JSON endpoint's `TakedownIn`, and the
errors of that schema and of the filing service turned back into words next to each field.

No takedown rule lives here; the schema and the service decide, this module only translates.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from app.errors import FieldError
from app.takedowns.schemas import TakedownIn

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLAIMANT_FIELDS = ("name", "email", "organization", "role", "acting_for")

# Each field's label, as the page shows it (the error summary repeats it).
LABELS = {
    "name": "Your full name",
    "email": "Your e-mail address",
    "organization": "Organisation",
    "role": "You are",
    "acting_for": "Rights holder you act for",
    "reason": "Reason",
    "targets": "Content to remove",
    "domain": "Whole publisher domain",
    "original_url": "Where the original was published",
    "original_published_at": "Date the original was published",
    "explanation": "Explanation",
    "good_faith": "Good faith statement",
    "accurate": "Accuracy statement",
    "signature": "Signature",
}

# Schema names that the schema's messages use, and how the page says them.
_NOUNS = {
    "acting_for": "the rights holder you act for",
    "original_published_at": "the original's publication date",
    "original_url": "the original's URL",
    "targets": "targets",
}

# What to say when a required field is left empty.
_MISSING = {
    "name": "Enter your full name.",
    "email": "Enter your e-mail address.",
    "role": "Choose whether you own the rights or act for the owner.",
    "reason": "Choose a reason.",
    "explanation": "Explain what the content is and why you ask us to remove it.",
    "signature": "Type your full name as your signature.",
}


class TakedownFormFields(BaseModel):
    """The form as posted: every field a string, absent ones empty, so that parsing never
    fails and everything typed can be shown again."""

    csrf_token: str = ""
    name: str = ""
    email: str = ""
    organization: str = ""
    role: str = ""
    acting_for: str = ""
    reason: str = ""
    targets: str = ""
    domain: str = ""
    original_url: str = ""
    original_published_at: str = ""
    explanation: str = ""
    good_faith: str = ""
    accurate: str = ""
    signature: str = ""

    def shown_again(self) -> dict[str, str]:
        """The values to put back into the form (never the CSRF token)."""
        return self.model_dump(exclude={"csrf_token"})

    def target_lines(self) -> list[tuple[int, str]]:
        """The non-empty lines of the targets box, with their line numbers (from 1)."""
        lines = self.targets.splitlines()
        return [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]

    def filing(self) -> TakedownIn:
        """The JSON endpoint's schema, filled from the form. Raises pydantic's ValidationError.

        An empty text field is left out: required ones are then reported as missing, optional
        ones are absent. A checkbox is true when ticked and false when not."""
        claimant = {name: getattr(self, name).strip() for name in _CLAIMANT_FIELDS}
        body: dict[str, Any] = {
            "claimant": {name: value for name, value in claimant.items() if value},
            "targets": [line for _, line in self.target_lines()],
            "good_faith": bool(self.good_faith),
            "accurate": bool(self.accurate),
        }
        for name in ("reason", "domain", "original_url", "explanation", "signature"):
            value = getattr(self, name).strip()
            if value:
                body[name] = value
        published = self.original_published_at.strip()
        if published:
            # A date input gives a day; the schema wants an instant: its first moment, in UTC.
            body["original_published_at"] = (
                f"{published}T00:00:00Z" if _DATE.match(published) else published
            )
        return TakedownIn.model_validate(body)


@dataclass
class FormErrors:
    """Messages by form field, and those that belong to no one field."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, name: str | None, message: str) -> None:
        if name is None:
            self.general.append(message)
        else:
            self.by_field.setdefault(name, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    def summary(self) -> list[tuple[str | None, str]]:
        """(field, "Label: message") in the form's order, then the general ones."""
        ordered = [
            (name, f"{LABELS[name]}: {message}")
            for name in LABELS
            for message in self.by_field.get(name, [])
        ]
        return ordered + [(None, message) for message in self.general]


def errors_from_validation(exc: ValidationError, form: TakedownFormFields) -> FormErrors:
    """The schema's complaints, each next to the field it is about."""
    errors = FormErrors()
    for error in exc.errors():
        if _is_union_noise(error):
            continue
        name, line = _form_field(error["loc"], str(error["msg"]))
        if error["type"] == "missing" and name in _MISSING:
            errors.add(name, _MISSING[name])
        else:
            errors.add(name, _message(str(error["msg"]), line, form))
    return errors


def errors_from_problem(
    problem_errors: Iterable[FieldError], form: TakedownFormFields
) -> FormErrors:
    """The service's 422 (`targets.3: names no article of ours`), each next to its field."""
    errors = FormErrors()
    for error in problem_errors:
        name, line = _form_field(_location(error.field), error.message)
        errors.add(name, _message(error.message, line, form))
    return errors


def _location(dotted: str) -> tuple[int | str, ...]:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def _is_union_noise(error: ErrorDetails) -> bool:
    # A target may be an int or a string in JSON; the form only ever sends strings, so the
    # int branch's complaint about a string says nothing useful.
    loc = error["loc"]
    return len(loc) == 3 and loc[0] == "targets" and "int" in str(loc[2])


def _form_field(loc: Sequence[int | str], message: str) -> tuple[str | None, int | None]:
    """The form field an error location is about, and the targets' position if any.
    Errors about a whole object (`acting_for is required when ...`) go to the first field
    their message names."""
    parts = [part for part in loc if part != "claimant"]
    if parts and parts[0] == "targets":
        position = parts[1] if len(parts) > 1 and isinstance(parts[1], int) else None
        return "targets", position
    if parts and str(parts[0]) in LABELS:
        return str(parts[0]), None
    named = [(message.find(name), name) for name in _NOUNS if re.search(rf"\b{name}\b", message)]
    return (min(named)[1] if named else None), None


def _message(message: str, position: int | None, form: TakedownFormFields) -> str:
    message = message.removeprefix("Value error, ")
    for name, noun in _NOUNS.items():
        message = re.sub(rf"\b{name}\b", noun, message)
    if position is not None:
        lines = form.target_lines()
        number = lines[position][0] if position < len(lines) else position + 1
        return f"Line {number}: {message}"
    return message[:1].upper() + message[1:]
