#!/usr/bin/python3
"""Checks the answers the end-to-end suite received against the OpenAPI description.

Usage: check-answers.py DESCRIPTION RECORD_DIR [--coverage auto|require|report]

RECORD_DIR holds the answers-<pid>.jsonl files tests/e2e/HttpClient.cpp
writes when ORDERPAY_API_RECORD names it: one JSON object a line, with
configuration, test, method, target, status, headers (lower-case names),
complete, and body (or body_base64).

Each answer is matched to its path template and method in DESCRIPTION
(daemon/http/openapi.json), then to its status (the explicit code, else
`default`), and checked: content type, required headers (and their values'
schemas), and the body against the response's JSON Schema (Draft 2020-12,
$refs resolved in the description). A path no template matches must answer
a problem (404 and the like); a documented path asked with an undocumented
method must answer 405 with `Allow` listing exactly the documented methods.

Coverage: every documented (method, path, status) must have been seen at
least once, but for EXEMPT below. 401 and 403 are counted per security
requirement (see ACCESS_STATUSES). With --coverage auto (the default) it is
enforced only when the records come from all four e2e configurations (a run
of part of the suite reports it and passes); `require` always enforces it,
`report` never does.

Exit status: 0 when every answer conforms (and coverage holds where
enforced), 1 otherwise, with every mismatch listed.
"""

import argparse
import base64
import collections
import json
import os
import re
import sys

import jsonschema

CONFIGURATIONS = {"embedded", "rabbitmq", "postgresql", "postgresql-rabbitmq"}

# 401 and 403 come from one place, ApiHandler's access check, before any
# route's own code runs: seen on one operation of a security requirement
# (the client routes, the admin routes), they are seen for all of them.
ACCESS_STATUSES = {"401", "403"}

# Documented answers the suite is not required to provoke, each with why.
# (method, path template, status); keep it short and true.
EXEMPT = {
    ("GET", "/status/stream", "200"):
        "the suite reads the stream over a raw socket of its own (AdminTest.cpp's EventStream), not through "
        "HttpClient; the stream's head is checked there",
}

HEADER_EXEMPT = {"content-type"}  # described by the response's media type, not a header object


def media_type(value):
    return value.split(";", 1)[0].strip().lower()


def is_json(media):
    return media == "application/json" or media.endswith("+json")


class Description:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        self.doc = json.loads(self.text)
        self.validators = {}
        # Templates with more literal segments first: /dead-letters/replay
        # before /dead-letters/{id}.
        self.templates = []
        for template in self.doc["paths"]:
            parts = [p for p in template.split("/") if p]
            regex = "^/" + "/".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
            literal = sum(not p.startswith("{") for p in parts)
            self.templates.append((-literal, template, re.compile(regex)))
        self.templates.sort()

    def template_for(self, path):
        # The router ignores empty segments ("/orders/" is "/orders").
        parts = [p for p in path.split("/") if p]
        normal = "/" + "/".join(parts)
        for _, template, regex in self.templates:
            if regex.match(normal):
                return template
        return None

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
        return node

    def target(self, ref):
        """The pointer `ref` leads to once every $ref on the way is followed."""
        node = self.pointer(ref)
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            node = self.pointer(ref)
        return ref

    def pointer(self, ref):
        assert ref.startswith("#/"), ref
        node = self.doc
        for token in ref[2:].split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return node

    def validator(self, ref):
        """A validator of the schema at JSON pointer `ref`, its $refs resolved in the description."""
        if ref not in self.validators:
            # The description itself is the root resource: "#/components/..."
            # resolves in it, and none of its other keys is a keyword.
            root = dict(self.doc)
            root["$ref"] = ref
            self.validators[ref] = jsonschema.Draft202012Validator(root)
        return self.validators[ref]

    def operations(self):
        for template, item in self.doc["paths"].items():
            for method, op in item.items():
                if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                    yield template, method.upper(), op

    def methods(self, template):
        item = self.doc["paths"][template]
        return {m.upper() for m in item if m in ("get", "put", "post", "delete", "patch", "head", "options", "trace")}


def escape_pointer(token):
    return token.replace("~", "~0").replace("/", "~1")


class Checker:
    def __init__(self, description):
        self.d = description
        self.mismatches = []
        self.seen = set()
        self.counts = collections.Counter()

    def fail(self, record, what):
        self.mismatches.append("%s %s -> %s [%s, %s]: %s" % (
            record.get("method") or "(no request line)", record.get("target") or "", record.get("status"),
            record.get("configuration", "?"), record.get("test") or "?", what))

    def check(self, record):
        self.counts["answers"] += 1
        method = record.get("method") or ""
        target = record.get("target") or ""
        status = int(record["status"])
        path = target.split("?", 1)[0].split("#", 1)[0]
        template = self.d.template_for(path) if method and path.startswith("/") else None
        if template is None:
            # No route: only a problem may come back (404, or what any request may get).
            self.counts["unrouted"] += 1
            if status < 400:
                return self.fail(record, "an answer %d for a path the description does not have" % status)
            component = {404: "NotFound", 401: "Unauthorized"}.get(status, "OtherProblem")
            return self.check_response(record, "#/components/responses/" + component, method)
        lookup = "GET" if method == "HEAD" else method
        if lookup not in self.d.methods(template):
            self.counts["405"] += 1
            if status == 405:
                allowed = {m.strip() for m in record["headers"].get("allow", "").split(",") if m.strip()}
                if allowed != self.d.methods(template):
                    self.fail(record, "Allow: %s, but the description has %s for %s" % (
                        ", ".join(sorted(allowed)) or "(none)", ", ".join(sorted(self.d.methods(template))), template))
                return self.check_response(record, "#/components/responses/MethodNotAllowed", method)
            if status < 400:
                return self.fail(record, "an answer %d for %s %s, which the description does not have" % (
                    status, method, template))
            component = {401: "Unauthorized"}.get(status, "OtherProblem")
            return self.check_response(record, "#/components/responses/" + component, method)
        op = self.d.doc["paths"][template][lookup.lower()]
        key = str(status)
        if key not in op["responses"]:
            key = key[0] + "XX" if key[0] + "XX" in op["responses"] else "default"
        if key not in op["responses"]:
            return self.fail(record, "status %d is not documented for %s %s" % (status, lookup, template))
        if key != "default":
            self.seen.add((lookup, template, key))
        ref = "#/paths/%s/%s/responses/%s" % (escape_pointer(template), lookup.lower(), key)
        self.check_response(record, ref, method)
        if status == 200 and template == "/openapi.json" and method == "GET" and record.get("complete"):
            if json.loads(record.get("body") or "null") != self.d.doc:
                self.fail(record, "GET /openapi.json is not daemon/http/openapi.json (a stale build?)")

    def check_response(self, record, ref, method):
        ref = self.d.target(ref)
        response = self.d.pointer(ref)
        headers = record.get("headers", {})
        for name, header in response.get("headers", {}).items():
            header_ref = self.d.target(ref + "/headers/" + escape_pointer(name))
            header = self.d.pointer(header_ref)
            if name.lower() in HEADER_EXEMPT:
                continue
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    self.fail(record, "no %s header" % name)
                continue
            schema = self.d.resolve(header.get("schema", {}))
            candidate = value
            if schema.get("type") == "integer":
                candidate = int(value) if re.fullmatch(r"-?[0-9]+", value) else value
            self.validate(record, header_ref + "/schema", candidate, "header " + name)
        content = response.get("content")
        body = record.get("body")
        if body is None and "body_base64" in record:
            body = base64.b64decode(record["body_base64"])
        if not content:
            if body:
                self.fail(record, "a body where the description has none")
            return
        got = media_type(headers.get("content-type", ""))
        if got not in content:
            return self.fail(record, "Content-Type %r, the description has %s" % (
                headers.get("content-type", ""), ", ".join(content)))
        if method == "HEAD":
            return  # no body to check
        if not record.get("complete"):
            self.counts["bodies cut short (not checked)"] += 1
            return
        if is_json(got):
            if isinstance(body, bytes):
                return self.fail(record, "a JSON body that is not UTF-8")
            try:
                value = json.loads(body)
            except ValueError as e:
                return self.fail(record, "a body that is not JSON (%s): %.200s" % (e, body))
            self.validate(record, ref + "/content/" + escape_pointer(got) + "/schema", value, "body")
        self.counts["bodies checked"] += 1

    def validate(self, record, ref, value, what):
        errors = sorted(self.d.validator(ref).iter_errors(value), key=lambda e: list(e.absolute_path))
        for e in errors[:5]:
            where = "".join("[%r]" % p for p in e.absolute_path) or "(the whole %s)" % what
            self.fail(record, "%s %s: %s" % (what, where, e.message[:300]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("description")
    parser.add_argument("records")
    parser.add_argument("--coverage", choices=["auto", "require", "report"], default="auto")
    args = parser.parse_args()

    d = Description(args.description)
    checker = Checker(d)
    configurations = set()
    files = sorted(f for f in os.listdir(args.records) if f.endswith(".jsonl")) if os.path.isdir(args.records) else []
    for name in files:
        with open(os.path.join(args.records, name), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith("\n"):
                    continue  # a line its process was writing when it died
                try:
                    record = json.loads(line)
                except ValueError as e:
                    checker.mismatches.append("%s:%d: not a record (%s)" % (name, number, e))
                    continue
                configurations.add(record.get("configuration"))
                checker.check(record)
    if checker.counts["answers"] == 0:
        print("check-answers: no answers recorded in %s: is ORDERPAY_API_RECORD set for the e2e tests?" % args.records)
        return 1

    documented = {(m, t, s) for t, m, op in d.operations() for s in op["responses"] if s.isdigit()}
    security = {(m, t): json.dumps(op.get("security", d.doc.get("security")), sort_keys=True)
                for t, m, op in d.operations()}
    seen_access = {(security[(m, t)], s) for m, t, s in checker.seen if s in ACCESS_STATUSES}
    missing = sorted(k for k in documented - checker.seen
                     if k not in EXEMPT and not (k[2] in ACCESS_STATUSES and (security[k[:2]], k[2]) in seen_access))
    stale = sorted(k for k in EXEMPT if k not in documented or k in checker.seen)

    print("check-answers: %d answers from %d processes (%s): %s" % (
        checker.counts["answers"], len(files), ", ".join(sorted(c for c in configurations if c)),
        ", ".join("%s %d" % (k, v) for k, v in sorted(checker.counts.items()) if k != "answers")))
    print("check-answers: %d of %d documented (method, path, status) seen, %d exempt" % (
        len(documented & checker.seen), len(documented), len(EXEMPT)))
    enforce = args.coverage == "require" or (args.coverage == "auto" and CONFIGURATIONS <= configurations)
    for m, t, s in missing:
        print("%s: not exercised: %s %s -> %s" % ("FAIL" if enforce else "note", m, t, s))
    for k in stale:
        print("%s: exemption no longer needed (seen, or not documented): %s %s -> %s" % (
            "FAIL" if enforce else "note", *k))
    if missing and not enforce:
        print("check-answers: coverage not enforced (%s)" % (
            "--coverage report" if args.coverage == "report" else
            "records from %s only, not all four configurations" % ", ".join(sorted(c for c in configurations if c))))
    for m in checker.mismatches:
        print("MISMATCH: " + m)
    if checker.mismatches:
        print("check-answers: %d answers do not match %s" % (len(checker.mismatches), args.description))
    failed = bool(checker.mismatches) or (enforce and (missing or stale))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
