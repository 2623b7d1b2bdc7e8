"""Provisioning API (SPEC §10): customer databases with SQL over HTTP; dedicated clusters,
their scaling history and advice."""
from .clusters import (
    ClusterDetail,
    ClusterListCreate,
    ClusterRecommendation,
    ClusterSizing,
    ScalingEventList,
)
from .databases import DatabaseDetail, DatabaseListCreate, DatabaseQuery

__all__ = ["ClusterDetail", "ClusterListCreate", "ClusterRecommendation", "ClusterSizing",
           "DatabaseDetail", "DatabaseListCreate", "DatabaseQuery", "ScalingEventList"]
