"""Pieces every app's staff console shares: read-only history admins and a paginator that
stays fast on big tables."""
from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CappedPaginator(Paginator):
    """Counts at most `cap` rows (`SELECT count(*) FROM (… LIMIT cap)`), so a change list
    of millions of invoices, payments or audit entries opens as fast as one of a hundred.
    Staff narrow such lists with filters and search rather than paging past the cap."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        try:
            return self.object_list[: self.cap].count()
        except (AttributeError, TypeError):  # not a queryset
            return min(len(self.object_list), self.cap)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History that only services write: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
