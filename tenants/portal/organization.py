"""The organisation page (owners only): data exports and erasure, through the same
services as the API."""
from django import forms
from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from aerolith.errors import DomainError, NotFound

from ..models import DataExport, TenantStatus
from ..permissions import Action
from ..services import erasure, exports
from .access import member_required


class ErasureForm(forms.Form):
    confirm = forms.CharField(label="Type the organisation's address (slug) to confirm",
                              max_length=100)


def _page(request, erasure_form=None, status=200):
    tenant = request.tenant
    return render(request, "portal/organization.html", {
        "exports": DataExport.objects.filter(tenant=tenant)[:20],
        "erasure_form": erasure_form or ErasureForm(),
        "cancelled": tenant.status == TenantStatus.CANCELLED,
    }, status=status)


@member_required(Action.OWN)
def organization(request):
    return _page(request)


@require_POST
@member_required(Action.OWN)
def export_request(request):
    try:
        exports.export_request(tenant=request.tenant, actor=request.principal)
    except DomainError as error:
        messages.error(request, error.explain())
    else:
        messages.info(request, "Your export is being prepared; its download link appears below "
                               "when it is ready. It can be downloaded once.")
    return redirect("portal:organization")


@member_required(Action.OWN)
def export_download(request, pk):
    try:
        export, handle = exports.export_download(tenant=request.tenant, export_id=pk,
                                                 actor=request.principal)
    except NotFound:
        raise Http404("No such export in this organisation.") from None
    except DomainError as error:
        messages.error(request, error.explain())
        return redirect("portal:organization")
    return FileResponse(handle, as_attachment=True, content_type="application/zip",
                        filename=f"{request.tenant.slug}-export-{export.pk}.zip")


@require_POST
@member_required(Action.OWN)
def erasure_request(request):
    form = ErasureForm(request.POST)
    if form.is_valid():
        try:
            erasure.erasure_request(tenant=request.tenant, actor=request.principal,
                                    confirm=form.cleaned_data["confirm"])
        except DomainError as error:
            for item in error.field_errors() or [{"field": None, "detail": error.detail}]:
                form.add_error("confirm" if item["field"] == "confirm" else None, item["detail"])
        else:
            messages.info(request, "Erasure is scheduled. Your databases, members and settings "
                                   "will be deleted within minutes; invoices are kept.")
            return redirect("portal:organization")
    return _page(request, erasure_form=form, status=400)
