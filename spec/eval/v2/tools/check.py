#!/usr/bin/env python3
"""Sanity checks for the v2 corpus files (not an evaluator).

Checks the shape of every file, that configs only use fields and enum values
that crates/core/src/model.rs accepts, that every key a case or config
references exists, that each expected variant/value/off-variation/rule index is
consistent with its config, and, with `mmh3` installed, that every
"salt/unit = bucket" claim in a case name and every split / experiment arm in an
expected result agrees with tools/buckets.py's bucket function.

Usage: python3 tools/check.py        (from spec/eval/v2 or anywhere)
"""
import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
try:
    sys.path.insert(0, str(HERE / "tools"))
    from buckets import bucket  # noqa: E402
    import mmh3  # noqa: E402
except ImportError:  # mmh3 missing: the plain-Python murmur3 below
    mmh3 = None

    def bucket(salt, unit):
        return (murmur3_py(f"{salt}/{unit}".encode("utf-8"), 0) * 10000) >> 32

DOC = {"schema", "environment", "revision", "flags", "segments", "experiments", "holdouts"}
FLAG = {"key", "type", "variations", "enabled", "off_variation", "prerequisites", "rules", "fallthrough", "metadata"}
FLAG_REQ = {"key", "type", "variations", "off_variation", "fallthrough"}
VARIATION = {"key", "value"}
PREREQ = {"flag", "variations"}
RULE = {"id", "conditions", "serve"}
SERVE = {"variation", "split", "experiment"}
SPLIT = {"bucket_by", "weights"}
WEIGHT = {"variation", "weight"}
COND = {"attribute", "op", "value"}
SEGMENT = {"key", "included", "excluded", "rules"}
SEGRULE = {"conditions"}
EXPERIMENT = {"key", "flag", "status", "variations", "coverage", "bucket_by", "conditions", "layer", "holdouts", "winner", "salt"}
LAYER = {"key", "start", "end"}
HOLDOUT = {"key", "size", "bucket_by"}
TYPES = {"boolean", "string", "number", "json"}
STATUSES = {"draft", "running", "paused", "stopped"}
OPS = {"equals", "not_equals", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with",
       "matches", "not_matches", "lt", "lte", "gt", "gte", "semver_eq", "semver_lt", "semver_lte",
       "semver_gt", "semver_gte", "before", "after", "exists", "not_exists", "in_segment", "not_in_segment"}
REASONS = {"STATIC", "DEFAULT", "TARGETING_MATCH", "SPLIT", "DISABLED", "PREREQUISITE_FAILED", "ERROR"}
ERRORS = {None, "FLAG_NOT_FOUND", "TARGETING_KEY_MISSING"}
EXPECTED = {"value", "variant", "reason", "error_code", "rule", "exposure"}

problems = []


def fail(where, msg):
    problems.append(f"{where}: {msg}")


def fields(where, obj, allowed, required=()):
    if not isinstance(obj, dict):
        fail(where, f"expected an object, got {obj!r}")
        return
    for k in obj:
        if k not in allowed:
            fail(where, f"unknown field {k!r}")
    for k in required:
        if k not in obj:
            fail(where, f"missing field {k!r}")


def same(a, b):
    """JSON equality as serde_json::Value compares it."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        # serde_json::Value equality (what crates/core/tests/spec.rs uses)
        # distinguishes 1 from 1.0, so the corpus writes values exactly as
        # the variation does.
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def check_schema(where, doc):
    """Field names / enums only (what serde would reject)."""
    fields(where, doc, DOC)
    for i, f in enumerate(doc.get("flags", [])):
        w = f"{where}.flags[{i}]"
        fields(w, f, FLAG, FLAG_REQ)
        if f.get("type") not in TYPES:
            fail(w, f"bad type {f.get('type')!r}")
        for j, v in enumerate(f.get("variations", [])):
            fields(f"{w}.variations[{j}]", v, VARIATION, VARIATION)
        for j, p in enumerate(f.get("prerequisites", [])):
            fields(f"{w}.prerequisites[{j}]", p, PREREQ, PREREQ)
        for j, r in enumerate(f.get("rules", [])):
            fields(f"{w}.rules[{j}]", r, RULE, {"serve"})
            for k, c in enumerate(r.get("conditions", [])):
                check_cond(f"{w}.rules[{j}].conditions[{k}]", c)
            check_serve(f"{w}.rules[{j}].serve", r.get("serve"))
        check_serve(f"{w}.fallthrough", f.get("fallthrough"))
    for i, s in enumerate(doc.get("segments", [])):
        w = f"{where}.segments[{i}]"
        fields(w, s, SEGMENT, {"key"})
        for j, r in enumerate(s.get("rules", [])):
            fields(f"{w}.rules[{j}]", r, SEGRULE, SEGRULE)
            for k, c in enumerate(r.get("conditions", [])):
                check_cond(f"{w}.rules[{j}].conditions[{k}]", c)
    for i, e in enumerate(doc.get("experiments", [])):
        w = f"{where}.experiments[{i}]"
        fields(w, e, EXPERIMENT, {"key", "flag", "status", "variations"})
        if e.get("status") not in STATUSES:
            fail(w, f"bad status {e.get('status')!r}")
        for j, v in enumerate(e.get("variations", [])):
            fields(f"{w}.variations[{j}]", v, WEIGHT, WEIGHT)
        if "layer" in e:
            fields(f"{w}.layer", e["layer"], LAYER, LAYER)
        for k, c in enumerate(e.get("conditions", [])):
            check_cond(f"{w}.conditions[{k}]", c)
    for i, h in enumerate(doc.get("holdouts", [])):
        fields(f"{where}.holdouts[{i}]", h, HOLDOUT, {"key", "size"})


def check_cond(where, c):
    fields(where, c, COND, {"attribute", "op"})
    if c.get("op") not in OPS:
        fail(where, f"bad op {c.get('op')!r}")


def check_serve(where, s):
    fields(where, s, SERVE)
    if not isinstance(s, dict) or len(s) != 1:
        fail(where, f"serve must have exactly one of {sorted(SERVE)}: {s!r}")
        return
    if "split" in s:
        fields(f"{where}.split", s["split"], SPLIT, {"weights"})
        for j, w in enumerate(s["split"].get("weights", [])):
            fields(f"{where}.split.weights[{j}]", w, WEIGHT, WEIGHT)


def check_valid(where, doc):
    """Referential integrity of a config that must compile."""
    flags = {f["key"]: f for f in doc.get("flags", [])}
    segs = {s["key"] for s in doc.get("segments", [])}
    exps = {e["key"]: e for e in doc.get("experiments", [])}
    holds = {h["key"] for h in doc.get("holdouts", [])}
    for kind, items in (("flags", doc.get("flags", [])), ("segments", doc.get("segments", [])),
                        ("experiments", doc.get("experiments", [])), ("holdouts", doc.get("holdouts", []))):
        keys = [x["key"] for x in items]
        if len(keys) != len(set(keys)):
            fail(where, f"duplicate {kind} keys")

    def conds(w, cs, in_segment_rule=False):
        for k, c in enumerate(cs):
            if c["op"] in ("in_segment", "not_in_segment"):
                if in_segment_rule:
                    fail(w, "segment operator in a segment rule")
                for s in c.get("value", []):
                    if s not in segs:
                        fail(f"{w}.conditions[{k}]", f"unknown segment {s!r}")

    for key, f in flags.items():
        w = f"{where}: flag {key!r}"
        vk = [v["key"] for v in f["variations"]]
        if not vk or len(vk) != len(set(vk)):
            fail(w, "empty or duplicate variations")
        for v in f["variations"]:
            if not {"boolean": lambda x: isinstance(x, bool),
                    "string": lambda x: isinstance(x, str),
                    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
                    "json": lambda x: isinstance(x, (dict, list))}[f["type"]](v["value"]):
                fail(w, f"variation {v['key']} value has the wrong type")
        if f["off_variation"] not in vk:
            fail(w, "unknown off_variation")
        for p in f.get("prerequisites", []):
            if p["flag"] not in flags:
                fail(w, f"unknown prerequisite {p['flag']}")
            else:
                for v in p["variations"]:
                    if v not in [x["key"] for x in flags[p["flag"]]["variations"]]:
                        fail(w, f"unknown prerequisite variation {v}")
        serves = [r["serve"] for r in f.get("rules", [])] + [f["fallthrough"]]
        for r in f.get("rules", []):
            conds(w, r.get("conditions", []))
        for s in serves:
            if "variation" in s and s["variation"] not in vk:
                fail(w, f"unknown variation {s['variation']}")
            if "split" in s:
                ws = s["split"]["weights"]
                if sum(x["weight"] for x in ws) != 10000:
                    fail(w, "split weights do not add up to 10000")
                for x in ws:
                    if x["variation"] not in vk:
                        fail(w, f"unknown split variation {x['variation']}")
            if "experiment" in s:
                e = exps.get(s["experiment"])
                if e is None:
                    fail(w, f"unknown experiment {s['experiment']}")
                elif e["flag"] != key:
                    fail(w, f"experiment {e['key']} belongs to {e['flag']}")
    for key, e in exps.items():
        w = f"{where}: experiment {key!r}"
        f = flags.get(e["flag"])
        if f is None:
            fail(w, "unknown flag")
            continue
        vk = [v["key"] for v in f["variations"]]
        if sum(x["weight"] for x in e["variations"]) != 10000:
            fail(w, "weights do not add up to 10000")
        for x in e["variations"]:
            if x["variation"] not in vk:
                fail(w, f"unknown arm {x['variation']}")
        if "winner" in e and e["winner"] not in vk:
            fail(w, "unknown winner")
        if not 0 <= e.get("coverage", 10000) <= 10000:
            fail(w, "coverage out of range")
        if "layer" in e and not (0 <= e["layer"]["start"] <= 10000 and 0 <= e["layer"]["end"] <= 10000):
            fail(w, "layer out of range")
        for h in e.get("holdouts", []):
            if h not in holds:
                fail(w, f"unknown holdout {h}")
        conds(w, e.get("conditions", []))
    for s in doc.get("segments", []):
        for r in s.get("rules", []):
            conds(f"{where}: segment {s['key']!r}", r["conditions"], in_segment_rule=True)
    for h in doc.get("holdouts", []):
        if not 0 <= h["size"] <= 10000:
            fail(where, f"holdout {h['key']} size out of range")


def unit_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return None


CLAIM = re.compile(r"([A-Za-z0-9#-]+)/(\S+?)(?: \([^)]*\))? = (\d+)")


def check_case_file(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    name = path.name
    fields(name, data, {"description", "config", "cases"}, {"description", "config", "cases"})
    doc = data["config"]
    check_schema(f"{name}.config", doc)
    check_valid(name, doc)
    flags = {f["key"]: f for f in doc.get("flags", [])}
    exps = {e["key"]: e for e in doc.get("experiments", [])}
    names = set()
    for i, c in enumerate(data["cases"]):
        w = f"{name} case {i} ({c.get('name', '?')[:60]})"
        fields(w, c, {"name", "flag", "context", "expected"}, {"name", "flag", "context", "expected"})
        if c["name"] in names:
            fail(w, "duplicate case name")
        names.add(c["name"])
        if not c["name"].rstrip().endswith("."):
            fail(w, "name should be a sentence ending with a period")
        ctx = c["context"]
        if not isinstance(ctx, dict):
            fail(w, "context must be an object")
        elif not (ctx.get("targetingKey") is None or isinstance(ctx["targetingKey"], str)):
            fail(w, "targetingKey must be a string (or null / absent)")
        ex = c["expected"]
        if set(ex) != EXPECTED:
            fail(w, f"expected must have exactly {sorted(EXPECTED)}")
            continue
        if ex["reason"] not in REASONS or ex["error_code"] not in ERRORS:
            fail(w, "bad reason or error_code")
        if (ex["reason"] == "ERROR") != (ex["error_code"] is not None):
            fail(w, "error_code must be set exactly when reason is ERROR")
        if ex["reason"] == "ERROR":
            if ex["value"] is not None or ex["variant"] is not None or ex["rule"] is not None or ex["exposure"] is not None:
                fail(w, "an error has no value, variant, rule or exposure")
            if ex["error_code"] == "FLAG_NOT_FOUND" and c["flag"] in flags:
                fail(w, "FLAG_NOT_FOUND for an existing flag")
            if ex["error_code"] == "TARGETING_KEY_MISSING" and c["flag"] not in flags:
                fail(w, "unknown flag")
            continue
        f = flags.get(c["flag"])
        if f is None:
            fail(w, f"unknown flag {c['flag']!r}")
            continue
        var = {v["key"]: v["value"] for v in f["variations"]}
        if ex["variant"] not in var:
            fail(w, f"unknown variant {ex['variant']!r}")
            continue
        if not same(var[ex["variant"]], ex["value"]):
            fail(w, "value does not match the variant's value")
        r = ex["reason"]
        if r == "DISABLED" and (f.get("enabled", False) or ex["variant"] != f["off_variation"]):
            fail(w, "DISABLED needs a disabled flag and its off variation")
        if r != "DISABLED" and not f.get("enabled", False):
            fail(w, "a disabled flag can only be DISABLED")
        if r == "PREREQUISITE_FAILED" and (not f.get("prerequisites") or ex["variant"] != f["off_variation"]):
            fail(w, "PREREQUISITE_FAILED needs prerequisites and the off variation")
        if r == "STATIC" and (f.get("rules") or f.get("prerequisites") or f["fallthrough"].get("variation") != ex["variant"]):
            fail(w, "STATIC needs no rules/prerequisites and the fallthrough variation")
        if r in ("DISABLED", "PREREQUISITE_FAILED", "STATIC") and ex["rule"] is not None:
            fail(w, f"{r} has no rule index")
        if r == "DEFAULT":
            ft = f["fallthrough"]
            if ex["rule"] is not None:
                fail(w, "DEFAULT has no rule index")
            if not (f.get("rules") or f.get("prerequisites")) and "variation" in ft:
                fail(w, "DEFAULT for a flag that would be STATIC")
            if "variation" in ft and ft["variation"] != ex["variant"]:
                fail(w, "DEFAULT must serve the fallthrough variation")
            if "experiment" in ft and ex["variant"] != f["off_variation"]:
                fail(w, "an unassigned fallthrough experiment serves the off variation")
            if "split" in ft:
                fail(w, "a fallthrough split gives SPLIT, not DEFAULT")
        serve = None
        if ex["rule"] is not None:
            rules = f.get("rules", [])
            if not 0 <= ex["rule"] < len(rules):
                fail(w, "rule index out of range")
                continue
            serve = rules[ex["rule"]]["serve"]
        elif r == "SPLIT":
            serve = f["fallthrough"]
        if r == "TARGETING_MATCH":
            if serve is None:
                fail(w, "TARGETING_MATCH needs a rule index")
            elif "variation" in serve:
                if serve["variation"] != ex["variant"]:
                    fail(w, "rule serves another variation")
            elif "experiment" in serve:
                e = exps[serve["experiment"]]
                if e["status"] != "stopped" or e.get("winner") != ex["variant"]:
                    fail(w, "TARGETING_MATCH from an experiment needs a stopped experiment's winner")
            else:
                fail(w, "TARGETING_MATCH from a split")
        if r == "SPLIT":
            if serve is None or "variation" in serve:
                fail(w, "SPLIT must come from a split or an experiment")
            elif "split" in serve:
                if ex["exposure"] is not None:
                    fail(w, "a plain split has no exposure")
                sp = serve["split"]
                u = unit_text(c["context"].get(sp.get("bucket_by", "targetingKey")))
                if bucket and u is not None:
                    b = bucket(c["flag"], u)
                    lo = 0
                    for wv in sp["weights"]:
                        if lo <= b < lo + wv["weight"]:
                            if wv["variation"] != ex["variant"]:
                                fail(w, f"bucket {b} is in {wv['variation']}, not {ex['variant']}")
                            break
                        lo += wv["weight"]
            elif "experiment" in serve:
                e = exps[serve["experiment"]]
                exp_ = ex["exposure"]
                if exp_ != {"experiment": e["key"], "variation": ex["variant"]}:
                    fail(w, "an assigned experiment needs the matching exposure")
                u = unit_text(c["context"].get(e.get("bucket_by", "targetingKey")))
                if bucket and u is not None:
                    b = bucket(e.get("salt", e["key"]), u)
                    cov = e.get("coverage", 10000)
                    lo, arm = 0, None
                    for wv in e["variations"]:
                        if lo <= b < lo + wv["weight"] * cov // 10000:
                            arm = wv["variation"]
                        lo += wv["weight"]
                    if arm != ex["variant"]:
                        fail(w, f"experiment bucket {b} gives arm {arm}, not {ex['variant']}")
        elif ex["exposure"] is not None:
            fail(w, "exposure only with SPLIT from an experiment")
    if bucket:
        for c in data["cases"]:
            for salt, unit, n in CLAIM.findall(c["name"]):
                if bucket(salt, unit) != int(n):
                    fail(f"{name}: {c['name'][:60]}", f"claims {salt}/{unit} = {n}, is {bucket(salt, unit)}")
    return len(data["cases"])


def check_invalid(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    fields(path.name, data, {"description", "cases"}, {"description", "cases"})
    names = set()
    for i, c in enumerate(data["cases"]):
        w = f"{path.name} case {i} ({c.get('name', '?')[:60]})"
        fields(w, c, {"name", "config", "error_contains"}, {"name", "config", "error_contains"})
        if c["name"] in names:
            fail(w, "duplicate case name")
        names.add(c["name"])
        check_schema(w, c["config"])
        ec = c["error_contains"]
        if not ec or not all(isinstance(s, str) and s for s in ec):
            fail(w, "error_contains must be a non-empty list of strings")
    return len(data["cases"])


def murmur3_py(data: bytes, seed: int = 0) -> int:
    """Plain-Python murmur3_x86_32, independent of mmh3, for the vectors."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF  # noqa: E731
    h, n = seed & 0xFFFFFFFF, len(data)
    for i in range(0, n - n % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = rotl((k * c1) & 0xFFFFFFFF, 15) * c2 & 0xFFFFFFFF
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail, k = data[n - n % 4:], 0
    for j in reversed(range(len(tail))):
        k = (k << 8) | tail[j]
    if tail:
        h ^= rotl((k * c1) & 0xFFFFFFFF, 15) * c2 & 0xFFFFFFFF
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def check_vectors(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    n = 0
    for v in data["murmur3"]:
        raw = bytes.fromhex(v["hex"])
        if v["input"] is not None and v["input"].encode("utf-8") != raw:
            fail(path.name, f"input and hex disagree: {v['input']!r}")
        if murmur3_py(raw, v["seed"]) != v["expected"]:
            fail(path.name, f"pure-Python murmur3 disagrees: {v}")
        if int(v["expected_hex"], 16) != v["expected"]:
            fail(path.name, f"expected_hex disagrees: {v}")
        if mmh3 is not None:
            if mmh3.hash(raw, v["seed"], signed=False) != v["expected"]:
                fail(path.name, f"mmh3 disagrees: {v}")
        n += 1
    for v in data["buckets"]:
        h = murmur3_py(f"{v['salt']}/{v['unit']}".encode("utf-8"))
        if (h * 10000) >> 32 != v["bucket"]:
            fail(path.name, f"pure-Python bucket disagrees: {v}")
        if bucket and bucket(v["salt"], v["unit"]) != v["bucket"]:
            fail(path.name, f"bucket disagrees: {v}")
        n += 1
    return n


def main():
    total = 0
    for p in sorted(HERE.glob("*.json")):
        if p.name == "invalid-configs.json":
            k = check_invalid(p)
        elif p.name == "murmur3-vectors.json":
            k = check_vectors(p)
        else:
            k = check_case_file(p)
        print(f"{p.name:<36} {k:>4}")
        total += k
    print(f"{'total':<36} {total:>4}")
    if mmh3 is None:
        print("note: mmh3 not installed; buckets checked with the plain-Python murmur3 only")
    for pr in problems:
        print("PROBLEM", pr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
