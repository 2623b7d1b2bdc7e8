"""Counts request and response bytes of metered API requests as bandwidth, into the Redis
buffer (no database write on the request path)."""
import logging

from .services.collectors import bandwidth_count

logger = logging.getLogger(__name__)


class BandwidthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        tenant_id = getattr(request, "aerolith_metered_tenant", None)
        if tenant_id is not None:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
            if not response.streaming:
                size += len(response.content)
            try:
                bandwidth_count(tenant_id, size)
            except Exception:  # noqa: BLE001 - metering must never fail a request
                logger.warning("Bandwidth not metered for tenant %s", tenant_id, exc_info=True)
        return response
