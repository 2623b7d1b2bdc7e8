"""A minimal Kubernetes API server for the CloudNativePG driver tests (stdlib
ThreadingHTTPServer on port 0), answering in Kubernetes' JSON shapes:

- /apis/postgresql.cnpg.io/v1/namespaces/{ns}/clusters[/{name}]: POST (201; 409
  AlreadyExists; 422 Invalid when the body fails cnpg_schema.json, as the CRD's structural
  schema would), GET, LIST, PATCH (application/merge-patch+json only, RFC 7386; other patch
  types 415), DELETE.
- /api/v1/namespaces/{ns}/secrets[/{name}]: POST (stringData folded into base64 data),
  GET, DELETE.
- /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods: LIST of PodMetrics (labelSelector
  `cnpg.io/cluster=<name>`), from `server.pod_usage[pod] = (cpu, memory)`.
Errors are `Status` objects (kind Status, status Failure, reason NotFound/AlreadyExists...).

`server.reconcile(name, phase=...)` plays the CNPG operator: it brings status in line with
spec.instances (new serials after latestGeneratedNode; scale-in drops the highest-serial
replica), marks every instance healthy and sets the phase. `server.requests` logs
(method, path, content-type).
"""
import base64
import copy
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "provisioning" / "drivers"
                     / "cnpg_schema.json").read_text())
HEALTHY_PHASE = "Cluster in healthy state"


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status_body(code: int, reason: str, message: str, *, kind: str = "", name: str = "",
                group: str = "") -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason,
            "details": {"name": name, "group": group, "kind": kind}, "code": code}


def _client_fields(body: dict) -> dict:
    body = copy.deepcopy(body)
    for field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
        body["metadata"].pop(field, None)
    return body


class KubeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.clusters: dict[tuple[str, str], dict] = {}
        self.secrets: dict[tuple[str, str], dict] = {}
        self.pod_usage: dict[str, tuple[str, str]] = {}
        self.metrics_available = True
        self.requests: list[tuple[str, str, str]] = []
        self._rv = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- the operator ------------------------------------------------------------------

    def reconcile(self, name: str, namespace: str = "aerolith", *,
                  phase: str = HEALTHY_PHASE) -> dict:
        with self.lock:
            body = self.clusters[(namespace, name)]
            status = body.setdefault("status", {})
            wanted = body["spec"]["instances"]
            names = list(status.get("instanceNames", []))
            latest = status.get("latestGeneratedNode", 0)
            while len(names) < wanted:
                latest += 1
                names.append(f"{name}-{latest}")
            primary = status.get("currentPrimary") or names[0]
            while len(names) > wanted:
                replicas = [n for n in names if n != primary]
                names.remove(max(replicas, key=lambda n: int(n.rsplit("-", 1)[1])))
            status.update(instances=len(names), readyInstances=len(names),
                          instanceNames=names, currentPrimary=primary,
                          targetPrimary=primary, latestGeneratedNode=latest, phase=phase,
                          instancesStatus={"healthy": list(names)})
            body["metadata"]["resourceVersion"] = self.next_rv()
            return copy.deepcopy(body)

    def set_status(self, name: str, namespace: str = "aerolith", **status) -> None:
        with self.lock:
            self.clusters[(namespace, name)].setdefault("status", {}).update(status)


class _Handler(BaseHTTPRequestHandler):
    server: KubeApiServer

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def _route(self):
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        # apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>] or api/v1/namespaces/...
        if parts[0] == "api":
            group, rest = "", parts[2:]
        elif parts[0] == "apis":
            group, rest = parts[1], parts[3:]
        else:
            return None
        if len(rest) < 3 or rest[0] != "namespaces":
            return None
        return group, rest[1], rest[2], (rest[3] if len(rest) > 3 else ""), query

    def _handle(self, method: str):
        route = self._route()
        self.server.requests.append((method, self.path, self.headers.get("Content-Type", "")))
        if route is None:
            return self._send(404, status_body(404, "NotFound", "the server could not find "
                                                "the requested resource"))
        group, namespace, plural, name, query = route
        if (group, plural) == ("postgresql.cnpg.io", "clusters"):
            store, kind = self.server.clusters, "clusters"
        elif (group, plural) == ("", "secrets"):
            store, kind = self.server.secrets, "secrets"
        elif (group, plural) == ("metrics.k8s.io", "pods") and method == "GET":
            return self._pod_metrics(namespace, name, query)
        else:
            return self._send(404, status_body(404, "NotFound", "the server could not find "
                                                "the requested resource"))
        with self.server.lock:
            return self._crud(method, store, kind, group, namespace, name)

    def _not_found(self, kind, group, name):
        return self._send(404, status_body(
            404, "NotFound", f'{kind}{"." + group if group else ""} "{name}" not found',
            kind=kind, name=name, group=group))

    def _crud(self, method, store, kind, group, namespace, name):
        key = (namespace, name)
        if method == "POST" and not name:
            body = self._body()
            name = (body.get("metadata") or {}).get("name", "")
            key = (namespace, name)
            if kind == "clusters":
                try:
                    jsonschema.validate(body, SCHEMA)
                except jsonschema.ValidationError as error:
                    return self._send(422, status_body(
                        422, "Invalid", f'Cluster.postgresql.cnpg.io "{name}" is invalid: '
                        f"{error.message}", kind="Cluster", name=name, group=group))
            if key in store:
                return self._send(409, status_body(
                    409, "AlreadyExists", f'{kind}{"." + group if group else ""} "{name}" '
                    "already exists", kind=kind, name=name, group=group))
            body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()),
                                    resourceVersion=self.server.next_rv(),
                                    creationTimestamp="2026-01-01T00:00:00Z")
            if kind == "secrets":
                data = body.setdefault("data", {})
                for field, value in (body.pop("stringData", None) or {}).items():
                    data[field] = base64.b64encode(value.encode()).decode()
            store[key] = body
            return self._send(201, body)
        if method == "GET" and not name:
            items = [v for (ns, _), v in store.items() if ns == namespace]
            return self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {},
                                    "items": items})
        if key not in store:
            return self._not_found(kind, group, name)
        if method == "GET":
            return self._send(200, store[key])
        if method == "PATCH":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0]
            if content_type != "application/merge-patch+json":
                return self._send(415, status_body(
                    415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                    f"format - accepted media types include: application/merge-patch+json "
                    f"(got {content_type})"))
            patched = merge_patch(store[key], self._body())
            if kind == "clusters":
                try:  # the schema covers what clients write, not server-set metadata
                    jsonschema.validate(_client_fields(patched), SCHEMA)
                except jsonschema.ValidationError as error:
                    return self._send(422, status_body(422, "Invalid", error.message))
            patched["metadata"]["resourceVersion"] = self.server.next_rv()
            store[key] = patched
            return self._send(200, patched)
        if method == "DELETE":
            body = store.pop(key)
            if kind == "secrets":
                return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Success",
                                        "details": {"name": name, "kind": kind}})
            return self._send(200, body)
        return self._send(405, status_body(405, "MethodNotAllowed", f"{method} not allowed"))

    def _pod_metrics(self, namespace, name, query):
        if not self.server.metrics_available:
            return self._send(404, status_body(404, "NotFound", "the server could not find "
                                                "the requested resource"))
        selector = query.get("labelSelector", "")
        cluster = selector.split("=", 1)[1] if selector.startswith("cnpg.io/cluster=") else ""
        items = []
        for pod, (cpu, memory) in sorted(self.server.pod_usage.items()):
            if cluster and not pod.startswith(f"{cluster}-"):
                continue
            items.append({"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                          "metadata": {"name": pod, "namespace": namespace,
                                       "labels": {"cnpg.io/cluster": cluster}},
                          "timestamp": "2026-01-01T00:00:00Z", "window": "30s",
                          "containers": [{"name": "postgres",
                                          "usage": {"cpu": cpu, "memory": memory}}]})
        return self._send(200, {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                                "metadata": {}, "items": items})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")
