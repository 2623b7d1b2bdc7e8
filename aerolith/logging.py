"""Request context for structured logs: request id, tenant and user on every record."""
import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")
user_var: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="")


class ContextFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        record.tenant = tenant_var.get()
        record.user = user_var.get()
        return True
