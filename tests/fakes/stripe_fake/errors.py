"""Stripe's error object: https://docs.stripe.com/api/errors — `{"error": {"type", "code", …}}`."""

DOCS = "https://docs.stripe.com/error-codes/"


class StripeError(Exception):
    """An API error; `saved` errors are stored under the request's idempotency key (Stripe saves
    the result of any request that started executing, e.g. a card decline, but not a request
    rejected by validation)."""

    def __init__(self, status: int, type: str, message: str, *, code: str | None = None,
                 param: str | None = None, saved: bool = False, **extra):
        super().__init__(message)
        self.status = status
        self.saved = saved
        self.error = {"type": type, "message": message}
        if code:
            self.error["code"] = code
            self.error["doc_url"] = DOCS + code.replace("_", "-")
        if param:
            self.error["param"] = param
        self.error.update({key: value for key, value in extra.items() if value is not None})

    def body(self) -> dict:
        return {"error": self.error}


def invalid(message: str, param: str | None = None, code: str | None = None, **extra) -> StripeError:
    return StripeError(400, "invalid_request_error", message, param=param, code=code, **extra)


_NAMES = {"payment_method": "PaymentMethod", "payment_intent": "payment_intent", "setup_intent": "setupintent"}


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    """404 for the object named in the URL; 400 when the missing id came in a parameter."""
    return StripeError(404 if param == "id" else 400, "invalid_request_error",
                       f"No such {_NAMES.get(kind, kind)}: '{object_id}'", code="resource_missing",
                       param=param)


def card_error(message: str, code: str, decline_code: str | None, **extra) -> StripeError:
    return StripeError(402, "card_error", message, code=code, decline_code=decline_code,
                       saved=True, **extra)
