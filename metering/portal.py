"""Portal usage page: a gauge per meter against the plan's allowance, the projection, and
a daily chart per meter for the current period. `meter_panels` is shared with the
dashboard (tenants/portal/views.py), which shows the last 30 days."""
from datetime import datetime

from django.http import Http404
from django.shortcuts import render
from django.urls import path

from aerolith.charts import bar_chart, gauge
from tenants.portal.access import member_required

from .analytics import usage_series, usage_summary


def meter_panels(tenant, summary: dict, *, start: datetime, end: datetime,
                 granularity: str | None = None) -> list[dict]:
    """For each meter of `summary` (analytics.usage_summary): its summary, the gauge of the
    period's usage against the allowance, and a bar chart of its usage from `start` to
    `end` (daily, or hourly over three days or less). One query per meter of the plan."""
    granularity = granularity or ("day" if (end - start).days > 3 else "hour")
    panels = []
    for item in summary["meters"]:
        meter = item.usage.meter
        points = usage_series(tenant_id=tenant.pk, meter=meter, granularity=granularity,
                              start=start, end=end)
        panels.append({
            "summary": item,
            "gauge": gauge(item.usage.quantity, item.usage.included, meter.unit),
            "chart": bar_chart(points, unit=meter.unit, title=f"{meter.name} per {granularity}",
                               time_format="%d %b" if granularity == "day" else "%H:%M"),
        })
    return panels


@member_required()
def usage_page(request):
    summary = usage_summary(request.tenant)
    if summary is None:
        raise Http404("This organisation has no subscription yet.")
    meters = meter_panels(request.tenant, summary, start=summary["period_start"],
                          end=summary["period_end"])
    return render(request, "portal/usage.html", {"summary": summary, "meters": meters})


urlpatterns = [path("usage", usage_page, name="usage")]
