# Writes src/admin/openapi.json, the admin API's OpenAPI document (`python3 scripts/gen-openapi.py`).
# `cargo test` checks it lists exactly the routes src/admin/service.rs serves.
import json
err = {"$ref": "#/components/responses/Error"}
def op(summary, tag, params=None, body=None, ok=("200", None), anonymous=False):
    o = {"summary": summary, "tags": [tag], "responses": {}}
    if params: o["parameters"] = params
    if body: o["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": body}}}}
    code, schema = ok
    if schema is None:
        o["responses"][code] = {"description": "done"}
    elif isinstance(schema, dict):
        o["responses"][code] = {"description": "ok", "content": schema}
    else:
        o["responses"][code] = {"description": "ok", "content": {"application/json": {"schema": {"$ref": schema}}}}
    if anonymous:
        o["security"] = []
    else:
        for c in ["400", "401", "403", "404", "409"]:
            o["responses"][c] = err
    return o
def q(name, schema, desc):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}
def pth(name, schema):
    return {"name": name, "in": "path", "required": True, "schema": schema}
def word(a, b):
    return {"type": "string", "pattern": "^\\w+$", "minLength": a, "maxLength": b}
def obj(props, required=None, closed=False):
    o = {"type": "object", "properties": props}
    if required: o["required"] = required
    if closed: o["additionalProperties"] = False
    return o
def health():
    o = op("Liveness and readiness", "service", ok=("200", "#/components/schemas/Health"), anonymous=True)
    o["responses"]["503"] = {"description": "the audit writer is failing: rows wait in the spill file, its last write failed or its thread stopped", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
    return o
def arr(items):
    return {"type": "array", "items": items}
def ref(n):
    return {"$ref": "#/components/schemas/" + n}
S = lambda **kw: dict(kw)
listp = [q("offset", {"type": "integer", "minimum": 0, "maximum": 10000000, "default": 0}, "items to skip"),
         q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "items to return (at most 1000)"),
         q("filter", {"type": "string", "minLength": 1, "maxLength": 64}, "case-insensitive text search"),
         q("sort_field", {"type": "string", "minLength": 1, "maxLength": 64}, "field to sort by"),
         q("sort_direction", {"type": "string", "enum": ["ASC", "DESC"], "default": "ASC"}, "sort direction")]
period = [q("username", word(2, 256), "one user"),
          q("from", {"type": "string", "format": "date"}, "first day (default: the 1st of this month)"),
          q("to", {"type": "string", "format": "date"}, "last day, included (default: yesterday); at most 366 days after from (else 400)")]
methods = arr(obj({"method_group": {"type": "string"}, "unique_points_per_day": {"type": "integer"}, "points_per_day": {"type": "integer"}}))
services = arr(obj({"service": {"type": "string"}, "methods": methods}))
dates = arr(obj({"date": {"type": "string", "format": "date"}, "services": services}))
statistics = obj({"users": arr(obj({"username": {"type": "string"}, "dates": dates}))})
totals = lambda r: obj({"overall": ref(r), "filter": ref(r)})
xlsx = {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}}}
paths = {
  "/health": {"get": health()},
  "/metrics": {"get": op("Prometheus counters (requests by status class, durations, audit rows, captures): ADMIN or AUDITOR, or anyone when the configuration says [metrics] public = true", "service", ok=("200", {"text/plain": {"schema": {"type": "string"}}}))},
  "/v1/cache": {"delete": op("Purge the read cache, or one route's entries (ADMIN)", "cache", params=[q("route", {"type": "string"}, "a route id, or pack:route")], ok=("204", None))},
  "/v1/version": {"get": op("Service version", "service", ok=("200", "#/components/schemas/Version"), anonymous=True)},
  "/v1/docs/openapi.json": {"get": op("This document", "service", ok=("200", {"application/json": {"schema": {"type": "object"}}}), anonymous=True)},
  "/v1/docs/openapi.html": {"get": op("This document as a readable HTML page", "service", ok=("200", {"text/html": {"schema": {"type": "string"}}}), anonymous=True)},
  "/v1/companies": {
    "post": op("Create a company (ADMIN)", "companies", body="#/components/schemas/Company", ok=("201", "#/components/schemas/Company")),
    "get": op("List companies (ADMIN, AUDITOR)", "companies", params=listp, ok=("200", "#/components/schemas/CompanyList"))},
  "/v1/companies/{key}": {
    "parameters": [pth("key", word(3, 256))],
    "get": op("A company", "companies", ok=("200", "#/components/schemas/Company")),
    "put": op("Replace a company; the key may be renamed (ADMIN)", "companies", body="#/components/schemas/Company", ok=("200", "#/components/schemas/Company")),
    "delete": op("Delete a company without users (ADMIN)", "companies", ok=("204", None))},
  "/v1/users": {
    "post": op("Create a user (ADMIN; PARTNER in its own company)", "users", body="#/components/schemas/UserWrite", ok=("201", "#/components/schemas/User")),
    "get": op("List users", "users", params=listp + [q("company_key", word(3, 256), "one company"), q("user_group", {"type": "string", "enum": ["TOTAL", "ACTIVE", "BLOCKED", "ADMINS"], "default": "TOTAL"}, "users logic group")], ok=("200", "#/components/schemas/UserList"))},
  "/v1/users/{username}": {
    "parameters": [pth("username", word(2, 256))],
    "get": op("A user", "users", ok=("200", "#/components/schemas/User")),
    "put": op("Replace a user (the username cannot change; a null password keeps the current one). A PARTNER may not change a user holding ADMIN or AUDITOR", "users", body="#/components/schemas/UserWrite", ok=("200", "#/components/schemas/User")),
    "delete": op("Delete a user and their keys (a PARTNER: not a user holding ADMIN or AUDITOR)", "users", ok=("204", None))},
  "/v1/users/{username}/keys": {
    "parameters": [pth("username", word(2, 256))],
    "post": op("Create an API key; the secret is in this answer only (a PARTNER: not for a user holding ADMIN or AUDITOR)", "keys", body="#/components/schemas/KeyRequest", ok=("201", "#/components/schemas/NewKey")),
    "get": op("List a user's keys (never the secret)", "keys", ok=("200", "#/components/schemas/KeyList"))},
  "/v1/users/{username}/keys/{id}": {
    "parameters": [pth("username", word(2, 256)), pth("id", {"type": "string"})],
    "delete": op("Revoke a key (a PARTNER: not of a user holding ADMIN or AUDITOR)", "keys", ok=("204", None))},
  "/v1/audit": {"get": op("Audit actions of the period (ADMIN, AUDITOR)", "audit", params=listp + [
      q("from", {"type": "string", "format": "date-time"}, "default: start of today (UTC)"),
      q("to", {"type": "string", "format": "date-time"}, "default: now; at most 366 days after from (else 400)"),
      q("company_key", word(3, 256), "the caller's company (who made the requests)"),
      q("company", {"type": "string", "minLength": 1, "maxLength": 256}, "an upstream company id the requests acted on: actions whose targets hold exactly this id"),
      q("username", word(2, 256), "one user"),
      q("service_name", {"type": "string"}, "a pack's service"),
      q("operation_id", {"type": "string", "minLength": 3, "maxLength": 256}, "a route id"),
      q("method_group", {"type": "string"}, "READ, WRITE, ...")], ok=("200", "#/components/schemas/AuditList"))},
  "/v1/statistics": {"get": op("Daily points per user, service and method group", "statistics", params=period, ok=("200", "#/components/schemas/Statistics"))},
  "/v1/report": {"get": op("The statistics as an XLSX file", "statistics", params=period, ok=("200", xlsx))},
  "/v1/users/{username}/quotas": {
    "parameters": [pth("username", word(2, 256))],
    "put": op("Set the base quotas, or a dated window's with from/to (ADMIN)", "quotas", params=[
        q("from", {"type": "string", "format": "date"}, "first day of a dated window"),
        q("to", {"type": "string", "format": "date"}, "last day of a dated window (needs from)")],
        body="#/components/schemas/QuotaRequest", ok=("200", "#/components/schemas/QuotaRequest")),
    "get": op("The user's base quotas and dated windows", "quotas", ok=("200", "#/components/schemas/QuotaList")),
    "delete": op("Remove every quota of the user, or one window with from/to (ADMIN)", "quotas", params=[
        q("from", {"type": "string", "format": "date"}, "first day of the window to remove"),
        q("to", {"type": "string", "format": "date"}, "last day of the window to remove")], ok=("204", None))},
  "/v1/tracecode/{tracecode}": {
    "parameters": [pth("tracecode", {"type": "string", "minLength": 1, "maxLength": 64})],
    "get": op("A captured body of a proxied request (ADMIN, AUDITOR)", "capture", params=[
      q("data_flow_type", {"type": "string", "enum": ["INPUT", "OUTPUT"], "default": "INPUT"}, "INPUT: the request; OUTPUT: the answer"),
      q("data_flow_stage", {"type": "integer", "minimum": 0, "maximum": 3, "default": 0}, "0: as received (INPUT: from the client, OUTPUT: from the upstreams); 1: as translated (INPUT: to the upstreams, OUTPUT: to the client); 2: the upstream requests Rosetta sent and 3: the answers it got, whatever the data_flow_type (JSON arrays in call order)"),
      q("data_flow_convert", {"type": "string", "enum": ["ORIGIN", "JSON"], "default": "ORIGIN"}, "JSON converts an XML body")],
      ok=("200", {"*/*": {"schema": {"type": "string", "format": "binary"}}}))},
}
# Every write: 403 also for a cross-site request, and (with a body type) 415 unless JSON.
for item in paths.values():
    for method, o in item.items():
        if method in ("post", "put", "patch", "delete"):
            o["responses"]["403"] = {"$ref": "#/components/responses/Forbidden"}
        if method in ("post", "put", "patch"):
            o["responses"]["415"] = {"$ref": "#/components/responses/NotJson"}
tracedata = obj({k: {"type": ["string", "null"]} for k in ["code", "client", "server", "service", "operation", "time"]})
schemas = {
  "Health": obj({"status": {"type": "string", "enum": ["ok", "failing"]}, "audit": obj({"writer": {"type": "string", "enum": ["ok", "failing", "stopped"]}, "queued": {"type": "integer", "description": "audit rows not yet durable"}, "capacity": {"type": "integer", "description": "store.audit_queue"}, "spilled": {"type": "integer", "description": "rows in the spill file, waiting to be replayed"}}), "cluster": obj({"redis": {"type": "string", "enum": ["up", "down"], "description": "whether Redis answered a PING within cluster.timeout just now"}, "since": {"type": "string", "format": "date-time", "description": "when this node last saw Redis change between up and down"}, "failures": {"type": "integer", "minimum": 0, "description": "calls to Redis that failed since the node started"}, "invalidations": obj({"state": {"type": "string", "enum": ["subscribed", "reconnecting"]}, "since": {"type": "string", "format": "date-time"}, "error": {"type": "string"}}, ["state", "since"])}, ["redis", "since", "failures", "invalidations"])}),
  "Version": obj({"major": {"type": "integer", "minimum": 1, "maximum": 100}, "minor": {"type": "integer", "minimum": 0, "maximum": 111}, "build": {"type": "string", "minLength": 1, "maxLength": 64}}, ["major", "minor", "build"]),
  "Company": obj({"key": word(3, 256), "detail": {"type": ["string", "null"], "maxLength": 1024}, "enabled": {"type": "boolean", "default": True, "description": "false blocks the company's users and keys"}}, ["key"], True),
  "Total": obj({"total": {"type": "integer"}}),
  "CompanyList": obj({"companies": arr(ref("Company")), "statistics": totals("Total")}),
  "UserWrite": obj({
      "username": word(2, 256), "password": {"type": ["string", "null"], "minLength": 5, "maxLength": 256, "writeOnly": True},
      "name": {"type": ["string", "null"], "minLength": 2, "maxLength": 256},
      "email": {"type": ["string", "null"], "format": "email", "minLength": 5, "maxLength": 256},
      "phone": {"type": ["string", "null"], "minLength": 5, "maxLength": 32}, "company_key": word(3, 256),
      "enabled": {"type": "boolean", "default": True},
      "roles": {"type": "array", "maxItems": 2, "uniqueItems": True, "items": {"type": "string", "enum": ["ADMIN", "PARTNER", "USER", "AUDITOR"]}},
      "timezone": {"type": "integer", "minimum": -12, "maximum": 12, "default": 0}}, ["username", "company_key", "roles"], True),
  "User": obj({"username": {"type": "string"}, "name": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]}, "phone": {"type": ["string", "null"]}, "company_key": {"type": "string"}, "enabled": {"type": "boolean"}, "roles": arr({"type": "string"}), "timezone": {"type": "integer"}}),
  "UserStats": obj({k: {"type": "integer"} for k in ["total", "active", "blocked", "admins"]}),
  "UserList": obj({"users": arr(ref("User")), "statistics": totals("UserStats")}),
  "KeyRequest": {"type": ["object", "null"], "additionalProperties": False, "properties": {"expires": {"type": ["string", "null"], "format": "date-time"}}},
  "Key": obj({"id": {"type": "string"}, "prefix": {"type": "string"}, "created": {"type": "string", "format": "date-time"}, "expires": {"type": ["string", "null"], "format": "date-time"}, "revoked": {"type": "boolean"}}),
  "NewKey": {"allOf": [ref("Key"), obj({"key": {"type": "string", "description": "the secret, shown once"}})]},
  "KeyList": obj({"keys": arr(ref("Key"))}),
  "Tracedata": tracedata,
  "Error": obj({"tracedata": ref("Tracedata"), "message": {"type": "string"}}, ["tracedata", "message"]),
  "AuditAction": obj({"username": {"type": "string"}, "company_key": {"type": "string"}, "tracedata": ref("Tracedata"), "method_group": {"type": "string"}, "statistics": obj({"points_count": {"type": "integer"}, "duration": {"type": "string", "description": "ISO 8601 duration"}}), "status": {"type": "integer"},
      "targets": {"type": "array", "items": {"type": "string"}, "description": "the upstream company ids the request acted on (those its route checked), usually 0 to 2"},
      "ip": {"type": ["string", "null"], "description": "the client's address (the connection's peer); refused authentications are recorded as anonymous with it"}}),
  "AuditList": obj({"actions": arr(ref("AuditAction")), "statistics": totals("Total")}),
  "Statistics": statistics,
  "MethodQuota": obj({"method_group": {"type": "string", "pattern": "^[A-Z_]+$"}, **{k: {**({"description": "Points over a dated window: only with `from` and `to`; a base quota that sets it is refused with 400."} if k == "points_per_date_window" else {}), "type": ["integer", "null"], "minimum": 0, "maximum": 1000000000} for k in ["points_per_request", "points_per_day", "points_per_date_window", "max_concurrent_execution"]}}, ["method_group"], True),
  "ServiceQuota": obj({"service": {"type": "string", "pattern": "^\\w+$", "maxLength": 64}, "methods": arr(ref("MethodQuota"))}, ["service", "methods"], True),
  "QuotaRequest": obj({"services": {"type": "array", "minItems": 1, "maxItems": 100, "uniqueItems": True, "items": ref("ServiceQuota")}}, ["services"], True),
  "QuotaList": obj({"base": obj({"services": arr(ref("ServiceQuota"))}), "windows": arr(obj({"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"}, "services": arr(ref("ServiceQuota"))}))}),
}
doc = {"openapi": "3.1.0",
       "info": {"title": "Rosetta admin API", "version": "1", "description": "Companies, users, API keys, audit, statistics. Errors are {tracedata, message} carrying the request's tracecode."},
       "security": [{"apiKey": []}, {"bearer": []}, {"basic": []}],
       "paths": paths,
       "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}, "bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
                      "responses": {"Error": {"description": "an error", "content": {"application/json": {"schema": ref("Error")}}},
                                    "Forbidden": {"description": "the caller's roles do not allow it, or a cross-site write: Sec-Fetch-Site other than same-origin or none, or an Origin other than http:// + Host (null included); checked before the credentials", "content": {"application/json": {"schema": ref("Error")}}},
                                    "NotJson": {"description": "Content-Type is not application/json (parameters such as charset allowed), also when there is no body; checked before the credentials", "content": {"application/json": {"schema": ref("Error")}}}},
                      "schemas": schemas}}
import os
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "admin", "openapi.json")
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
