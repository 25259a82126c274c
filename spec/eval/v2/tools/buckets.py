#!/usr/bin/env python3
"""Print every bucket the v2 evaluation corpus relies on, from an independent
implementation of the frozen bucketing function (docs/evaluation.md):

    h      = murmur3_x86_32(utf8("{salt}/{unit}"), seed = 0)
    bucket = (h * 10_000) >> 32            # 0..=9999

murmur3 comes from the `mmh3` package (pip install mmh3), not from Switchyard.
The expected results in the corpus were written by hand from this table.

Usage:
    python3 tools/buckets.py            # table: file, salt, unit, bucket
    python3 tools/buckets.py --json     # the same as JSON lines
"""
import json
import sys

import mmh3


def bucket(salt: str, unit: str) -> int:
    h = mmh3.hash(f"{salt}/{unit}".encode("utf-8"), 0, signed=False)
    return (h * 10000) >> 32


# (file, salt, unit) for every bucket used by a case. The unit is the exact
# string that is hashed: numbers and booleans appear as their JSON text.
PAIRS = [
    # 11-splits: salt = flag key
    *[("11-splits", "split-50", u) for u in
      ["user-1", "user-2", "user-3", "user-4", "user-4034", "user-26359", "user-2531", "user-5535"]],
    *[("11-splits", "split-3way", u) for u in
      ["user-14", "user-1", "user-15", "user-4", "user-25", "user-5", "user-2"]],
    *[("11-splits", "split-in-rule", u) for u in ["user-1", "user-2"]],
    *[("11-splits", "split-zero-weight", u) for u in ["user-1395", "user-1"]],
    *[("11-splits", "split-by-account", u) for u in
      ["acct-10", "42", "1.5", "-7", "true", "false"]],
    # 12-experiments: salt = experiment key
    *[("12-experiments", "onboarding-test", u) for u in ["user-2", "user-18", "user-1", "user-6"]],
    *[("12-experiments", "pricing-test", u) for u in
      ["user-10", "user-18", "user-15", "user-21", "user-33", "user-30", "user-6"]],
    *[("12-experiments", "three-arm-test", u) for u in
      ["user-8", "user-4", "user-11", "user-32", "user-7", "user-2", "user-12", "user-5", "user-3"]],
    *[("12-experiments", "stopped-winner", u) for u in ["user-9", "user-1"]],
    *[("12-experiments", "de-only-test", u) for u in ["user-2", "user-1"]],
    *[("12-experiments", "account-test", u) for u in ["acct-2", "acct-1", "42"]],
    *[("12-experiments", "ft-test", u) for u in ["user-12", "user-10", "user-11", "user-8", "user-4"]],
    # 13-layers: salt = layer key for eligibility, experiment key for the arm
    *[("13-layers", "checkout-layer", u) for u in ["user-1", "user-3", "user-5", "user-2", "user-4", "user-16"]],
    *[("13-layers", "layer-a", u) for u in ["user-1", "user-3", "user-5", "user-16"]],
    *[("13-layers", "layer-b", u) for u in ["user-5", "user-2", "user-4"]],
    *[("13-layers", "pricing-layer", u) for u in ["user-47", "user-2", "user-175", "user-9", "user-4"]],
    *[("13-layers", "narrow-test", u) for u in ["user-47", "user-2", "user-175"]],
    # 14-holdouts: salt = holdout key for the holdout, experiment key for the arm
    *[("14-holdouts", "h-2026", u) for u in ["user-28", "user-138", "user-22", "user-1", "user-2"]],
    *[("14-holdouts", "promo-test", u) for u in ["user-28", "user-22", "user-1", "user-2"]],
    *[("14-holdouts", "h-org", u) for u in ["acme", "umbrella", "wayne", "initech"]],
    *[("14-holdouts", "org-test", u) for u in ["user-1", "user-2"]],
    *[("14-holdouts", "multi-holdout-test", u) for u in ["user-2", "user-1"]],
    # 18-experiment-lifecycle: salt = the experiment's salt when it has one
    *[("18-experiment-lifecycle", "paused-test", u) for u in ["user-8"]],
    *[("18-experiment-lifecycle", "salted-test", u) for u in ["user-2", "user-3", "user-14"]],
    *[("18-experiment-lifecycle", "salted-test#2", u) for u in ["user-2", "user-3", "user-14", "user-1"]],
    *[("18-experiment-lifecycle", "shipped-test#3", u) for u in ["user-2"]],
    # 17-non-ascii
    *[("17-non-ascii", "intl-split", u) for u in
      ["ユーザー-1", "ユーザー-2", "ユーザー-3", "Zoë", "Zoe\u0301", "😀", "😀😀",
       "🏳️‍🌈", "用户-7", "Łukasz", "straße", "Ωmega", "🚀"]],
    *[("17-non-ascii", "intl-test", u) for u in
      ["ユーザー-1", "Zoë", "Zoe\u0301", "😀", "🚀", "用户-7", "Ωmega", "😀😀"]],
]


def main() -> None:
    as_json = "--json" in sys.argv[1:]
    if not as_json:
        print(f"{'file':<16} {'salt':<20} {'bucket':>6}  unit (UTF-8 hex)")
    for file, salt, unit in PAIRS:
        b = bucket(salt, unit)
        if as_json:
            print(json.dumps({"file": file, "salt": salt, "unit": unit, "bucket": b}, ensure_ascii=False))
        else:
            print(f"{file:<16} {salt:<20} {b:>6}  {unit!r} ({unit.encode('utf-8').hex()})")


if __name__ == "__main__":
    main()
