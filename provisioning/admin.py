"""Staff console for clusters, nodes, operations and the scaling history (SPEC §11).

Nothing here edits a row directly: scaling, pausing autoscaling and replacing a node go
through the services (which start operations, check bounds and write the audit log), and
each action reports what it did or why it was refused. History rows are read-only.
"""
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from aerolith.admin import CappedPaginator, ReadOnlyAdmin
from aerolith.errors import DomainError, ValidationFailed

from .models import Cluster, Health, Node, Operation, ScalingEvent
from .services.clusters import cluster_autoscale_pause, cluster_scale, node_replace


def report_each(model_admin, request, objects, operation) -> int:
    """Run `operation(obj) -> str` for each object and tell staff, one message each, what
    was done or why it was refused. Returns how many succeeded."""
    done = 0
    for obj in objects:
        try:
            text = operation(obj)
        except DomainError as error:
            model_admin.message_user(request, f"{obj}: {error.explain()}", messages.ERROR)
        else:
            done += 1
            model_admin.message_user(request, f"{obj}: {text}", messages.SUCCESS)
    return done


class ScaleForm(forms.Form):
    # The range is the service's to check, so staff read the same words as customers.
    node_count = forms.IntegerField(label="Nodes",
                                    help_text="One primary, the rest streaming replicas.")


class ActionsOnly:
    """Every field read-only and nothing saved from the change form: the rows belong to
    the services and the health checks, which a stale form must not overwrite. Change
    permission stays, for the actions."""

    def save_model(self, request, obj, form, change):
        pass

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save": False,
                         "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)


class NodeInline(admin.TabularInline):
    model = Node
    extra = 0
    can_delete = False
    fields = ["name", "role", "health", "host", "port", "cpu_percent", "memory_percent",
              "connections", "replication_lag_bytes", "observed_at", "failures"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AutoscaleFilter(admin.SimpleListFilter):
    title = "autoscaling"
    parameter_name = "autoscaling"

    def lookups(self, request, model_admin):
        return [("on", "On"), ("paused", "Paused by staff"), ("off", "Off")]

    def queryset(self, request, queryset):
        if self.value() == "on":
            return queryset.filter(autoscale_enabled=True, autoscale_paused=False)
        if self.value() == "paused":
            return queryset.filter(autoscale_paused=True)
        if self.value() == "off":
            return queryset.filter(autoscale_enabled=False)
        return queryset


@admin.register(Cluster)
class ClusterAdmin(ActionsOnly, admin.ModelAdmin):
    """Read-only fields; the actions change clusters through the services."""

    list_display = ["name", "tenant_label", "provider", "region", "size", "node_count",
                    "ready", "health", "autoscaling", "last_outcome", "last_reason",
                    "last_evaluated_at"]
    list_filter = ["health", "provider", "region", "size", AutoscaleFilter, "shared"]
    list_select_related = ["tenant"]
    search_fields = ["name", "handle", "tenant__slug", "tenant__name"]
    show_full_result_count = False
    paginator = CappedPaginator
    inlines = [NodeInline]
    actions = ["scale_to", "pause_autoscaling", "resume_autoscaling"]
    fieldsets = [
        (None, {"fields": ["name", "handle", "tenant", "shared", "provider", "region", "size",
                           "node_count", "health", "created_at", "deleted_at", "operations_shown"]}),
        ("Autoscaling policy", {"fields": ["autoscale_enabled", "autoscale_paused", "min_nodes",
                                           "max_nodes", "cpu_target_percent",
                                           "memory_target_percent", "scale_up_step",
                                           "scale_down_step", "stabilization_seconds",
                                           "forecast_enabled"]}),
        ("Autoscaler state", {"fields": ["last_outcome", "last_reason", "last_evaluated_at",
                                         "recent_recommendations", "compute_accrued_until"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f for fieldset in self.fieldsets for f in fieldset[1]["fields"]]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            ready_nodes=Count("nodes", filter=Q(nodes__health=Health.HEALTHY)))

    def has_add_permission(self, request):
        return False  # clusters are made by tenants (API, portal) or the shared-tier setup

    def has_delete_permission(self, request, obj=None):
        return False  # deleting stops servers: an operation, not a row delete

    @admin.display(description="Tenant", ordering="tenant__slug")
    def tenant_label(self, obj):
        return obj.tenant.slug if obj.tenant_id else "— shared —"

    @admin.display(description="Ready", ordering="ready_nodes")
    def ready(self, obj):
        return obj.ready_nodes

    @admin.display(description="Autoscaling")
    def autoscaling(self, obj):
        if not obj.autoscale_enabled:
            return "off"
        bounds = f"{obj.min_nodes}–{obj.max_nodes}"
        return f"paused ({bounds})" if obj.autoscale_paused else f"on ({bounds})"

    @admin.display(description="Operations (newest first)")
    def operations_shown(self, obj):
        rows = obj.operations.order_by("-created_at", "-id")[:10]
        if not rows:
            return "None"
        # format_html escapes its arguments to text first, so times are formatted here.
        items = format_html_join("", '<li><a href="{}">{} {}</a> · {} · {} UTC{}</li>', (
            (reverse("admin:provisioning_operation_change", args=[op.pk]), op.get_kind_display(),
             op.target_nodes or "", op.get_state_display(), f"{op.created_at:%Y-%m-%d %H:%M}",
             f" · {op.error[:120]}" if op.error else "") for op in rows))
        return format_html("<ul>{}</ul>", items)

    # --- actions --------------------------------------------------------------------------

    @admin.action(description="Scale the selected cluster to N nodes…", permissions=["change"])
    def scale_to(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, "Select exactly one cluster to scale.", messages.ERROR)
            return None
        return redirect("admin:provisioning_cluster_scale", ids[0])

    @admin.action(description="Pause autoscaling of the selected clusters", permissions=["change"])
    def pause_autoscaling(self, request, queryset):
        def pause(cluster):
            if cluster.autoscale_paused:
                return "autoscaling was already paused; nothing changed."
            cluster_autoscale_pause(cluster=cluster, actor=request.user, paused=True)
            return "autoscaling paused: the autoscaler leaves its node count alone until resumed."

        report_each(self, request, queryset.order_by("pk"), pause)

    @admin.action(description="Resume autoscaling of the selected clusters", permissions=["change"])
    def resume_autoscaling(self, request, queryset):
        def resume(cluster):
            if not cluster.autoscale_paused:
                return "autoscaling was not paused; nothing changed."
            cluster_autoscale_pause(cluster=cluster, actor=request.user, paused=False)
            state = "on" if cluster.autoscale_enabled else "off in the tenant's policy"
            return f"autoscaling resumed (it is {state})."

        report_each(self, request, queryset.order_by("pk"), resume)

    # --- the scale page -------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<path:object_id>/scale/", view(self.scale_view),
                     name="provisioning_cluster_scale"),
                *super().get_urls()]

    def scale_view(self, request, object_id):
        """GET shows the form; POST calls cluster_scale. A refusal comes back as a form
        error (bad count) or a message (busy, being deleted), nothing changed."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        cluster = self.get_object(request, unquote(object_id))
        if cluster is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        change_url = reverse("admin:provisioning_cluster_change", args=[cluster.pk])
        form = ScaleForm(request.POST if request.method == "POST" else None,
                         initial={"node_count": cluster.node_count})
        if request.method == "POST" and form.is_valid():
            target = form.cleaned_data["node_count"]
            try:
                operation = cluster_scale(cluster=cluster, node_count=target, actor=request.user)
            except ValidationFailed as error:
                for item in error.field_errors():
                    form.add_error("node_count" if item["field"] == "node_count" else None,
                                   item["detail"])
            except DomainError as error:
                self.message_user(request, f"{cluster}: {error.explain()}", messages.ERROR)
                return redirect(change_url)
            else:
                self.message_user(request, f"{cluster}: scaling to {target} nodes (operation "
                                           f"{operation.pk}, {operation.get_state_display().lower()}).",
                                  messages.SUCCESS)
                return redirect(change_url)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts,
            "title": f"Scale {cluster.name}", "cluster": cluster, "form": form,
            "change_url": change_url, "max_nodes": settings.AEROLITH_CLUSTER_MAX_NODES,
        }
        return TemplateResponse(request, "admin/provisioning/cluster/scale_form.html", context)


@admin.register(Node)
class NodeAdmin(ActionsOnly, admin.ModelAdmin):
    list_display = ["name", "cluster", "tenant_label", "role", "health", "host", "port",
                    "cpu_percent", "memory_percent", "connections", "replication_lag_bytes",
                    "failures", "observed_at"]
    list_filter = ["health", "role", "cluster__provider", "cluster__region"]
    list_select_related = ["cluster", "cluster__tenant"]
    search_fields = ["name", "cluster__name", "cluster__handle", "cluster__tenant__slug"]
    show_full_result_count = False
    paginator = CappedPaginator
    actions = ["replace"]
    fields = ["name", "cluster", "role", "health", "host", "port", "cpu_percent",
              "memory_percent", "connections", "replication_lag_bytes", "observed_at",
              "failures", "started_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Tenant", ordering="cluster__tenant__slug")
    def tenant_label(self, obj):
        return obj.cluster.tenant.slug if obj.cluster.tenant_id else "— shared —"

    @admin.action(description="Replace the selected nodes (one operation per cluster)",
                  permissions=["change"])
    def replace(self, request, queryset):
        def replace_one(node):
            operation = node_replace(node=node, actor=request.user)
            return (f"replacement started on cluster {node.cluster.name} (operation "
                    f"{operation.pk}); a new node takes its place.")

        report_each(self, request, queryset.select_related("cluster").order_by("pk"), replace_one)


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ["id", "cluster", "kind", "state", "target_nodes", "node_name", "requested_by",
                    "attempts", "created_at", "finished_at"]
    list_filter = ["state", "kind"]
    list_select_related = ["cluster"]
    search_fields = ["cluster__name", "cluster__handle", "idempotency_key", "requested_by"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    paginator = CappedPaginator


@admin.register(ScalingEvent)
class ScalingEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "cluster", "tenant_label", "outcome", "reason", "current_nodes",
                    "desired_nodes", "operation"]
    list_filter = ["outcome", "reason"]
    list_select_related = ["cluster", "cluster__tenant", "operation"]
    search_fields = ["cluster__name", "cluster__handle", "cluster__tenant__slug"]
    date_hierarchy = "at"
    show_full_result_count = False
    paginator = CappedPaginator

    @admin.display(description="Tenant", ordering="cluster__tenant__slug")
    def tenant_label(self, obj):
        return obj.cluster.tenant.slug if obj.cluster.tenant_id else "— shared —"
