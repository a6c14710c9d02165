#!/usr/bin/env python3
"""Reads `nvshare-ctl status --json` output without depending on its exact shape.

The fields are looked up by name anywhere in the document (scheduler_pid at
the top, switches and clients per GPU), so a reshuffled layout still reads.

Subcommands:
  get FILE KEY             the first value of KEY found (exit 1 if none)
  per-gpu FILE KEY         one line `UUID VALUE` per GPU domain (a dict with
                           uuid and capacity) that has KEY
  summarize FILE...        one JSON line over many snapshots: how many parsed,
                           the most clients seen at once, the largest
                           switches/grants/bytes_restored/bytes_evicted/swap_time_us,
                           the client names and states seen, the capacities
"""

import json
import sys

COUNTERS = ("switches", "grants", "bytes_restored", "bytes_evicted", "swap_time_us")


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def walk(node):
    """Every dict in the document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def find_all(node, key):
    return [d[key] for d in walk(node) if key in d]


def client_lists(doc):
    return [v for v in find_all(doc, "clients") if isinstance(v, list)]


def per_gpu(doc, key):
    """(uuid, value of key) for every GPU domain of the document."""
    return [(d["uuid"], d[key]) for d in walk(doc)
            if "uuid" in d and "capacity" in d and key in d]


def summarize(paths):
    summary = {"snapshots": 0, "max_clients": 0, "names": [], "states": [], "capacity": []}
    for key in COUNTERS:
        summary["max_" + key] = 0
    for path in paths:
        doc = load(path)
        if doc is None:
            continue
        summary["snapshots"] += 1
        lists = client_lists(doc)
        summary["max_clients"] = max([summary["max_clients"]] + [len(c) for c in lists])
        for clients in lists:
            for client in clients:
                if not isinstance(client, dict):
                    continue
                for field, bucket in (("name", "names"), ("state", "states")):
                    value = client.get(field)
                    if isinstance(value, str) and value not in summary[bucket]:
                        summary[bucket].append(value)
        for key in COUNTERS:
            numbers = [v for v in find_all(doc, key) if isinstance(v, (int, float))]
            if numbers:
                summary["max_" + key] = max(summary["max_" + key], sum(numbers))
        for capacity in find_all(doc, "capacity"):
            if isinstance(capacity, (int, float)) and capacity not in summary["capacity"]:
                summary["capacity"].append(capacity)
    return summary


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "get" and len(args) == 2:
        doc = load(args[0])
        values = [] if doc is None else find_all(doc, args[1])
        if not values:
            sys.exit(1)
        value = values[0]
        print(json.dumps(value) if isinstance(value, (dict, list)) else value)
    elif cmd == "per-gpu" and len(args) == 2:
        doc = load(args[0])
        for uuid, value in ([] if doc is None else per_gpu(doc, args[1])):
            print(uuid, json.dumps(value) if isinstance(value, (dict, list)) else value)
    elif cmd == "summarize":
        print(json.dumps(summarize(args)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
