"""Domain errors raised by services. Each carries a machine-readable code, an HTTP status
and a message that tells the user what to do; the API turns them into problem+json, the
portal into form errors and the admin into messages."""


class DomainError(Exception):
    status = 400
    code = "invalid"
    title = "Request refused"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None,
                 extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.field = field
        self.extra = extra or {}

    def explain(self) -> str:
        """One sentence for places without field-level display (admin messages, CLI)."""
        details = [item["detail"] for item in self.field_errors()]
        return " ".join(details) or self.detail

    def field_errors(self) -> list[dict]:
        if self.field is None:
            return []
        return [{"field": self.field, "code": self.code, "detail": self.detail}]


class ValidationFailed(DomainError):
    """Several field errors at once: `errors` maps field name to a list of (code, message)."""

    status = 400
    code = "validation_error"
    title = "Validation failed"

    def __init__(self, errors: dict[str, list[tuple[str, str]]], detail: str | None = None):
        self.errors = errors
        fields = ", ".join(sorted(errors))
        super().__init__(detail or f"Some fields are not valid: {fields}.")

    def field_errors(self) -> list[dict]:
        return [
            {"field": field, "code": code, "detail": message}
            for field, problems in self.errors.items()
            for code, message in problems
        ]


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Forbidden(DomainError):
    status = 403
    code = "permission_denied"
    title = "Permission denied"
