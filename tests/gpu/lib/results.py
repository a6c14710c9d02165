#!/usr/bin/env python3
"""Reads the `RESULT key=value ...` lines that every GPU test program prints.

Subcommands:
  get FILE KEY         KEY's value on the last RESULT line that has it (exit 1 if none)
  all FILE KEY         every value of KEY, one per line, in order
  median V...          the median of the numbers given, each argument a number or
                       a comma list of numbers (exit 1 if none is a number)
"""

import statistics
import sys


def result_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    parsed = []
    for line in lines:
        if not line.startswith("RESULT "):
            continue
        fields = {}
        for token in line[len("RESULT "):].split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        parsed.append(fields)
    return parsed


def values_of(path, key):
    return [fields[key] for fields in result_lines(path) if key in fields]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "get" and len(args) == 2:
        values = values_of(*args)
        if not values:
            sys.exit(1)
        print(values[-1])
    elif cmd == "all" and len(args) == 2:
        for value in values_of(*args):
            print(value)
    elif cmd == "median":
        numbers = []
        for text in (item for arg in args for item in arg.split(",")):
            try:
                numbers.append(float(text))
            except ValueError:
                continue
        if not numbers:
            sys.exit(1)
        print(f"{statistics.median(numbers):.6g}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
