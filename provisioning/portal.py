"""Portal pages for databases and clusters (SPEC §11). Thin like the API: parse the form,
call one service, render. A refused form is shown again with the service's explanation
(status 400) and nothing changes. A new database's password is shown once, on the page
that answers its creation, and is never stored where a later page could show it."""
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aerolith import clock
from aerolith.charts import Marker, Series, time_chart
from aerolith.errors import DomainError
from aerolith.portal_forms import ActionForm, apply_errors, refused_while_inactive
from billing.selectors import subscription_of
from tenants.models import Region
from tenants.permissions import Action
from tenants.portal.access import member_required

from .advice import autoscale_preview, reason_text
from .models import Cluster, ClusterSample, Database, Placement, Provider, ScalingEvent
from .recommendations import recommend
from .selectors import operation_in_flight, tenant_clusters, with_operation_in_flight
from .services.clusters import (
    POLICY_FIELDS,
    cluster_create,
    cluster_delete,
    cluster_policy_update,
    cluster_scale,
)
from .services.databases import database_create, database_delete, database_uri
from .sizes import SIZE_CHOICES

OUTCOME_TEXT = {"scale_up": "Scale up", "scale_down": "Scale down", "hold": "Hold"}
CHART_HOURS = {"6": 6, "24": 24, "168": 168}
HISTORY_SHOWN = 50
MAX_ID = 2**63 - 1


# --- forms --------------------------------------------------------------------------------

class DatabaseForm(forms.Form):
    name = forms.CharField(label="Name", max_length=63,
                           help_text="Lowercase letters, digits, underscores or hyphens.")
    cluster = forms.TypedChoiceField(label="Cluster", coerce=int, required=False,
                                     empty_value=None)

    def __init__(self, *args, clusters=(), **kwargs):
        super().__init__(*args, **kwargs)
        if clusters:
            self.fields["cluster"].choices = [(c.pk, f"{c.name} ({c.region})") for c in clusters]
        else:
            del self.fields["cluster"]


class ClusterForm(forms.Form):
    name = forms.CharField(label="Name", max_length=63,
                           help_text="Lowercase letters, digits or hyphens, starting with a letter.")
    size = forms.ChoiceField(label="Node size", choices=SIZE_CHOICES, initial="small")
    node_count = forms.IntegerField(label="Nodes", initial=3,
                                    help_text="One primary, the rest streaming replicas.")
    provider = forms.ChoiceField(label="Provider", choices=Provider.choices, initial=Provider.LOCAL)
    region = forms.ChoiceField(label="Region", choices=Region.choices)
    autoscale_enabled = forms.BooleanField(label="Autoscale between the bounds below",
                                           required=False)
    min_nodes = forms.IntegerField(label="Minimum nodes", required=False)
    max_nodes = forms.IntegerField(label="Maximum nodes", required=False)


class WorkloadForm(forms.Form):
    qps = forms.FloatField(label="Queries per second at peak", min_value=0)
    data_gb = forms.FloatField(label="Data size (GB)", min_value=0)
    read_percent = forms.FloatField(label="Reads (% of queries)", min_value=0, max_value=100,
                                    initial=80)


class PolicyForm(forms.Form):
    autoscale_enabled = forms.BooleanField(label="Autoscaling on", required=False)
    min_nodes = forms.IntegerField(label="Minimum nodes")
    max_nodes = forms.IntegerField(label="Maximum nodes")
    cpu_target_percent = forms.IntegerField(label="CPU target (%)", help_text="10–95.")
    memory_target_percent = forms.IntegerField(label="Memory target (%)", help_text="10–95.")
    scale_up_step = forms.IntegerField(label="Most nodes added at once")
    scale_down_step = forms.IntegerField(label="Most nodes removed at once")
    stabilization_seconds = forms.IntegerField(
        label="Scale-down stabilisation (seconds)",
        help_text="A scale-down waits until the load has stayed low this long (0–3600).")
    forecast_enabled = forms.BooleanField(
        label="Scale up ahead of forecast peaks (same hour last week plus trend)", required=False)


class ScaleForm(forms.Form):
    node_count = forms.IntegerField(label="Nodes", help_text="One primary, the rest replicas.")


# --- helpers ------------------------------------------------------------------------------

def _apply_errors(form: forms.Form, error: DomainError) -> None:
    apply_errors(form, error, renames={"cluster_id": "cluster"})


def _refuse_if_inactive(request, form) -> bool:
    """True when the organisation may change nothing now, with the reason on the form."""
    refusal = refused_while_inactive(request)
    if refusal:
        form.add_error(None, refusal)
    return refusal is not None


def _valid_id(pk: int) -> int:
    if not 0 < pk <= MAX_ID:
        raise Http404("No such item in this organisation.")
    return pk


def _database(pk) -> Database:
    database = Database.objects.filter(pk=_valid_id(pk)).first()
    if database is None:
        raise Http404("No such database in this organisation.")
    return database


def _cluster(request, pk) -> Cluster:
    cluster = tenant_clusters(request.tenant).filter(pk=_valid_id(pk)).first()
    if cluster is None:
        raise Http404("No such cluster in this organisation.")
    return cluster


def _dedicated(tenant) -> bool:
    subscription = subscription_of(tenant)
    return bool(subscription and subscription.plan.database_placement == Placement.DEDICATED)


# --- databases ----------------------------------------------------------------------------

def _databases_page(request, *, form=None, status=200):
    dedicated = _dedicated(request.tenant)
    clusters = list(tenant_clusters(request.tenant)) if dedicated else []
    databases = [(d, database_uri(d)) for d in Database.objects.order_by("created_at", "id")]
    return render(request, "portal/databases.html", {
        "databases": databases, "dedicated": dedicated, "has_clusters": bool(clusters),
        "form": form or DatabaseForm(clusters=clusters, auto_id="db_%s"),
        "can_manage": request.principal.can(Action.MANAGE_DATABASES),
    }, status=status)


@require_GET
@member_required()
def database_list(request):
    return _databases_page(request)


@never_cache
@require_POST
@member_required(Action.MANAGE_DATABASES)
def database_new(request):
    clusters = list(tenant_clusters(request.tenant)) if _dedicated(request.tenant) else []
    form = DatabaseForm(request.POST, clusters=clusters, auto_id="db_%s")
    if form.is_valid() and not _refuse_if_inactive(request, form):
        try:
            database, uri = database_create(tenant=request.tenant, actor=request.principal,
                                            name=form.cleaned_data["name"],
                                            cluster_id=form.cleaned_data.get("cluster"))
        except DomainError as error:
            _apply_errors(form, error)
        else:
            # The only page that ever shows the password: not cached, not stored.
            return render(request, "portal/database_created.html",
                          {"database": database, "uri": uri}, status=201)
    return _databases_page(request, form=form, status=400)


@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_DATABASES)
def database_remove(request, pk):
    database = _database(pk)
    form = ActionForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        form.is_valid()
        if not _refuse_if_inactive(request, form):
            try:
                database_delete(tenant=request.tenant, actor=request.principal, database=database)
            except DomainError as error:
                _apply_errors(form, error)
            else:
                messages.success(request, f"Database {database.name} and its data were deleted.")
                return redirect("portal:databases")
        status = 400
    return render(request, "portal/database_delete.html",
                  {"database": database, "uri": database_uri(database), "form": form},
                  status=status)


# --- clusters -----------------------------------------------------------------------------

@require_GET
@member_required()
def cluster_list(request):
    clusters = [(c, operation_in_flight(c))
                for c in with_operation_in_flight(tenant_clusters(request.tenant))]
    return render(request, "portal/clusters.html", {
        "clusters": clusters, "dedicated": _dedicated(request.tenant),
        "can_manage": request.principal.can(Action.MANAGE_DATABASES),
    })


def _new_cluster_page(request, *, form=None, workload=None, status=200):
    advice = None
    initial = {"region": request.tenant.region}
    workload = workload or WorkloadForm(request.GET or None, auto_id="wl_%s")
    if workload.is_bound and workload.is_valid():
        data = workload.cleaned_data
        try:
            advice = recommend({"qps": data["qps"], "data_gb": data["data_gb"],
                                "read_fraction": data["read_percent"] / 100})
        except ValueError as error:
            workload.add_error(None, str(error))
        else:
            initial.update(size=advice.size, node_count=advice.nodes)
    return render(request, "portal/cluster_new.html", {
        "form": form or ClusterForm(initial=initial, auto_id="cl_%s"), "workload": workload,
        "advice": advice, "dedicated": _dedicated(request.tenant),
    }, status=status if not (workload.is_bound and workload.errors) else 400)


@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_DATABASES)
def cluster_new(request):
    if request.method == "GET":
        return _new_cluster_page(request)
    form = ClusterForm(request.POST, auto_id="cl_%s")
    if form.is_valid() and not _refuse_if_inactive(request, form):
        data = form.cleaned_data
        policy = {"autoscale_enabled": data["autoscale_enabled"]}
        policy.update({f: data[f] for f in ("min_nodes", "max_nodes") if data[f] is not None})
        try:
            cluster, _ = cluster_create(tenant=request.tenant, actor=request.principal,
                                        name=data["name"], size=data["size"],
                                        node_count=data["node_count"], provider=data["provider"],
                                        region=data["region"], policy=policy)
        except DomainError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, f"Cluster {cluster.name} is being created; this page "
                                      "shows its progress.")
            return redirect("portal:cluster", pk=cluster.pk)
    return _new_cluster_page(request, form=form, workload=WorkloadForm(auto_id="wl_%s"),
                             status=400)


def _chart(cluster: Cluster, hours: int):
    end = clock.now(cluster.tenant)
    start = end - timedelta(hours=hours)
    samples = list(ClusterSample.objects.filter(cluster=cluster, at__gte=start, at__lte=end)
                   .order_by("at").values_list("at", "nodes", "cpu_percent"))
    events = list(ScalingEvent.objects.filter(cluster=cluster, at__gte=start, at__lte=end)
                  .exclude(outcome="hold").order_by("at")[:200])
    return time_chart(
        [Series("Nodes", [(at, nodes) for at, nodes, _ in samples], step=True, css="nodes"),
         Series("Mean CPU", [(at, cpu) for at, _, cpu in samples], axis="right", css="cpu")],
        title=f"Nodes and CPU, last {hours} hours", left_unit="nodes", right_unit="CPU %",
        right_max=100,
        markers=[Marker(e.at, f"{e.outcome.replace('_', ' ')} {e.current_nodes} → "
                              f"{e.desired_nodes} ({e.reason})") for e in events],
        empty_text="No samples yet: the autoscaler records one every five minutes.")


def _cluster_page(request, cluster, *, status=200, **forms_given):
    hours = CHART_HOURS.get(request.GET.get("hours", ""), 24)
    advice = autoscale_preview(cluster)
    context = {
        "cluster": cluster,
        "nodes": cluster.nodes.all(),
        "operation": operation_in_flight(cluster),
        "recent_operations": cluster.operations.order_by("-created_at", "-id")[:5],
        "advice": advice.decision, "advice_text": reason_text(advice.decision.reason),
        "chart": _chart(cluster, hours), "hours": hours, "hour_choices": CHART_HOURS.values(),
        "advice_outcome": OUTCOME_TEXT.get(advice.decision.outcome, advice.decision.outcome),
        "events": [(e, OUTCOME_TEXT.get(e.outcome, e.outcome), reason_text(e.reason)) for e in
                   cluster.scaling_events.order_by("-at", "-id")[:HISTORY_SHOWN]],
        "can_manage": request.principal.can(Action.MANAGE_DATABASES),
        "policy_form": PolicyForm(initial={f: getattr(cluster, f) for f in POLICY_FIELDS},
                                  auto_id="policy_%s"),
        "scale_form": ScaleForm(initial={"node_count": cluster.node_count}, auto_id="scale_%s"),
        "max_nodes": settings.AEROLITH_CLUSTER_MAX_NODES,
    }
    context.update(forms_given)
    return render(request, "portal/cluster.html", context, status=status)


@require_GET
@member_required()
def cluster_detail(request, pk):
    return _cluster_page(request, _cluster(request, pk))


@require_GET
@member_required()
def cluster_nodes(request, pk):
    """The cluster page's nodes table and in-flight operation, alone: htmx polls it every
    3 s while an operation runs (the fragment stops the polling once it has finished)."""
    cluster = _cluster(request, pk)
    return render(request, "portal/_cluster_nodes.html", {
        "cluster": cluster, "nodes": cluster.nodes.all(),
        "operation": operation_in_flight(cluster),
    })


@require_POST
@member_required(Action.MANAGE_DATABASES)
def cluster_policy(request, pk):
    cluster = _cluster(request, pk)
    form = PolicyForm(request.POST, auto_id="policy_%s")
    if form.is_valid() and not _refuse_if_inactive(request, form):
        try:
            cluster_policy_update(cluster=cluster, actor=request.principal,
                                  changes=dict(form.cleaned_data))
        except DomainError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, "The autoscaling policy was saved.")
            return redirect("portal:cluster", pk=cluster.pk)
    return _cluster_page(request, cluster, status=400, policy_form=form)


@require_POST
@member_required(Action.MANAGE_DATABASES)
def cluster_scale_view(request, pk):
    cluster = _cluster(request, pk)
    form = ScaleForm(request.POST, auto_id="scale_%s")
    if form.is_valid() and not _refuse_if_inactive(request, form):
        try:
            cluster_scale(cluster=cluster, node_count=form.cleaned_data["node_count"],
                          actor=request.principal)
        except DomainError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, f"Scaling {cluster.name} to {form.cleaned_data['node_count']} "
                                      "nodes; this page shows its progress.")
            return redirect("portal:cluster", pk=cluster.pk)
    return _cluster_page(request, cluster, status=400, scale_form=form)


@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_DATABASES)
def cluster_remove(request, pk):
    cluster = _cluster(request, pk)
    form = ActionForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        form.is_valid()
        if not _refuse_if_inactive(request, form):
            try:
                cluster_delete(cluster=cluster, actor=request.principal)
            except DomainError as error:
                _apply_errors(form, error)
            else:
                messages.success(request, f"Cluster {cluster.name} is being deleted.")
                return redirect("portal:clusters")
        status = 400
    return render(request, "portal/cluster_delete.html", {"cluster": cluster, "form": form},
                  status=status)


urlpatterns = [
    path("databases", database_list, name="databases"),
    path("databases/new", database_new, name="database-new"),
    path("databases/<int:pk>/delete", database_remove, name="database-delete"),
    path("clusters", cluster_list, name="clusters"),
    path("clusters/new", cluster_new, name="cluster-new"),
    path("clusters/<int:pk>", cluster_detail, name="cluster"),
    path("clusters/<int:pk>/nodes", cluster_nodes, name="cluster-nodes"),
    path("clusters/<int:pk>/policy", cluster_policy, name="cluster-policy"),
    path("clusters/<int:pk>/scale", cluster_scale_view, name="cluster-scale"),
    path("clusters/<int:pk>/delete", cluster_remove, name="cluster-delete"),
]
