"""Handlers for responses made outside DRF views."""
from django.shortcuts import render

from aerolith.api.errors import json_problem, wants_problem_json


def not_found(request, exception=None):
    if wants_problem_json(request):
        return json_problem(request, 404, "not_found",
                            f"No API endpoint at {request.path}. See /api/docs/ for the list.")
    return render(request, "errors/404.html", status=404)


def server_error(request):
    if wants_problem_json(request):
        return json_problem(request, 500, "server_error",
                            "Something went wrong on our side; it has been logged.")
    return render(request, "errors/500.html", status=500)
