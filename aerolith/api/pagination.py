"""Cursor pagination with ?cursor= and ?limit= (default 50, max 500), SPEC §10."""
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

BAD_CURSOR = ("This cursor is not valid. Use the `next` or `previous` link from a previous "
              "page, or omit it to start at the first page.")


class CursorPagination(pagination.CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "limit"
    ordering = ("-created_at", "-id")

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= self.max_page_size:
            raise ValidationError({"limit": [f"limit must be an integer from 1 to {self.max_page_size}."]})
        return value

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except Exception as exc:  # DRF raises NotFound for a bad cursor; say what to do
            raise ValidationError({"cursor": [BAD_CURSOR]}) from exc

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError) as exc:
            # A well-formed cursor whose position does not fit the ordering field
            # (e.g. "p=2026" for a time) fails only when the queryset is filtered.
            if request.query_params.get(self.cursor_query_param) is None:
                raise
            raise ValidationError({"cursor": [BAD_CURSOR]}) from exc
