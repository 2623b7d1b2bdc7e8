"""Portal usage page: a gauge per meter against the plan's allowance, the projection, and
a daily chart per meter for the current period."""
from django.http import Http404
from django.shortcuts import render
from django.urls import path

from aerolith.charts import bar_chart, gauge
from tenants.portal.access import member_required

from .analytics import usage_series, usage_summary


@member_required()
def usage_page(request):
    summary = usage_summary(request.tenant)
    if summary is None:
        raise Http404("This organisation has no subscription yet.")
    start, end = summary["period_start"], summary["period_end"]
    meters = []
    for item in summary["meters"]:
        meter = item.usage.meter
        granularity = "day" if (end - start).days > 3 else "hour"
        points = usage_series(tenant_id=request.tenant.pk, meter=meter,
                              granularity=granularity, start=start, end=end)
        meters.append({
            "summary": item,
            "gauge": gauge(item.usage.quantity, item.usage.included, meter.unit),
            "chart": bar_chart(points, unit=meter.unit, title=f"{meter.name} per {granularity}",
                               time_format="%d %b" if granularity == "day" else "%H:%M"),
        })
    return render(request, "portal/usage.html", {"summary": summary, "meters": meters})


urlpatterns = [path("usage", usage_page, name="usage")]
