#!/usr/bin/python3
"""docs/api.md and the OpenAPI description document the same routes and statuses.

Usage: check-docs.py docs/api.md daemon/http/openapi.json

From docs/api.md: the table of section "Routes at a glance" (one row a
route: `METHOD /path`, its answers, its errors, as status codes), and every
route the rest of the document names in a heading (### `POST /orders` → 202)
or in the first column of a table, which must each be a row of that table
with the heading's status among its statuses. From the description: every
operation and its explicit status codes (not `default`). Both directions are
compared; every difference is listed and fails the test.
"""

import json
import re
import sys

ROUTE = re.compile(r"`(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^`?\s]*)(?:\?[^`]*)?`")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def docs_routes(text):
    lines = text.splitlines()
    problems = []
    table = {}
    try:
        start = lines.index("## Routes at a glance")
    except ValueError:
        return {}, ["docs/api.md has no section '## Routes at a glance'"]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    for line in lines[start + 1:end]:
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = ROUTE.fullmatch(cells[0])
        if not m:
            problems.append("docs/api.md: a row of 'Routes at a glance' that names no route: " + line)
            continue
        statuses = set(re.findall(r"\b[1-5][0-9][0-9]\b", " ".join(cells[1:])))
        key = (m.group(1), m.group(2))
        if key in table:
            problems.append("docs/api.md: %s %s is twice in 'Routes at a glance'" % key)
        table[key] = statuses
    # Everywhere else: headings and the first cell of table rows.
    for number, line in enumerate(lines, 1):
        if start < number <= end:
            continue  # the table itself
        heading = line.startswith("#")
        if not heading and not line.startswith("| `"):
            continue
        text_to_scan = line if heading else line.strip().strip("|").split("|")[0]
        for m in ROUTE.finditer(text_to_scan):
            key = (m.group(1), m.group(2))
            if key not in table:
                problems.append("docs/api.md:%d names %s %s, which 'Routes at a glance' does not list" % (
                    number, key[0], key[1]))
                continue
            arrow = re.search(r"→ ([1-5][0-9][0-9])", line) if heading else None
            if arrow and arrow.group(1) not in table[key]:
                problems.append("docs/api.md:%d: %s %s → %s, but 'Routes at a glance' has %s" % (
                    number, key[0], key[1], arrow.group(1), ", ".join(sorted(table[key]))))
    return table, problems


def description_routes(doc):
    routes = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                routes[(method.upper(), path)] = {s for s in op["responses"] if re.fullmatch(r"[1-5][0-9][0-9]", s)}
    return routes


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        docs, problems = docs_routes(f.read())
    with open(sys.argv[2], encoding="utf-8") as f:
        described = description_routes(json.load(f))
    for key in sorted(set(docs) | set(described)):
        if key not in described:
            problems.append("%s %s is in docs/api.md, not in the description" % key)
        elif key not in docs:
            problems.append("%s %s is in the description, not in docs/api.md" % key)
        elif docs[key] != described[key]:
            only_docs = sorted(docs[key] - described[key])
            only_described = sorted(described[key] - docs[key])
            problems.append("%s %s: statuses differ:%s%s" % (
                key[0], key[1],
                " only in docs/api.md " + ", ".join(only_docs) if only_docs else "",
                " only in the description " + ", ".join(only_described) if only_described else ""))
    for p in problems:
        print("DIFFERENCE: " + p)
    print("check-docs: %d routes in docs/api.md, %d in the description, %d differences" % (
        len(docs), len(described), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
