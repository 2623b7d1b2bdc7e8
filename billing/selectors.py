from .models import Plan


def public_plans():
    return Plan.objects.filter(is_public=True, for_tenant__isnull=True)
