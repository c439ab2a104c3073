#!/usr/bin/env python3
"""device_summary.py OUT_DIR: the short table ci/device-check.sh prints last.

Reads what device-check wrote under OUT_DIR/logs: steps.tsv (step, status, seconds, note), the
GoogleTest JSON reports (tests-<backend>.json), trit-bench's JSON (bench-<backend>-*.json) and
compare_torch.py's torch.json. Prints: each step's outcome; conformance pass/fail/skip counts per
backend; per device the measured copy bandwidth against the DRAM figure; GEMV rows (cold, i.e.
weights from DRAM, where present) with time, % of copy bandwidth, % of floor and the speed-up over
cuBLAS fp16 (and torch fp16 matmul); attention rows against SDPA flash / default; the sweep.
Standard library only; a missing file means that part is left out, with a word why.
"""
import glob
import json
import os
import sys


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def gtest_counts(report):
    """(passed, failed, skipped, first failing names) from a --gtest_output=json report."""
    passed = failed = skipped = 0
    failing = []
    for suite in report.get("testsuites", []):
        for t in suite.get("testsuite", []):
            name = f"{suite.get('name', '?')}.{t.get('name', '?')}"
            if t.get("failures"):
                failed += 1
                failing.append(name)
            elif t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped, failing


def fmt(v, spec="{:.1f}", none="-"):
    return none if v is None else spec.format(v)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    logs = os.path.join(sys.argv[1], "logs")
    out = []
    p = out.append

    p("==== device check summary")
    steps = os.path.join(logs, "steps.tsv")
    if os.path.exists(steps):
        with open(steps) as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 3:
                    note = cols[3] if len(cols) > 3 else ""
                    p(f"  {cols[1]:<9} {cols[2]:>5}s  {cols[0]}{'  (' + note + ')' if note else ''}")

    reports = sorted(glob.glob(os.path.join(logs, "tests-*.json")))
    if reports:
        p("")
        p("conformance (GoogleTest, this backend's devices only):")
        for r in reports:
            backend = os.path.basename(r)[len("tests-"):-len(".json")]
            data = load_json(r)
            if data is None:
                p(f"  {backend:<8} no readable report (the run was cut short?)")
                continue
            ok, bad, skip, failing = gtest_counts(data)
            p(f"  {backend:<8} {ok} passed, {bad} failed, {skip} skipped")
            for name in failing[:6]:
                p(f"           FAILED {name}")
            if len(failing) > 6:
                p(f"           ... and {len(failing) - 6} more (logs/tests-{backend}.log)")

    bench_rows, devices = [], {}
    for path in sorted(glob.glob(os.path.join(logs, "bench-*.json"))):
        data = load_json(path)
        if not data:
            continue
        for d in data.get("devices", []):
            devices.setdefault(d["label"], d)
        bench_rows.extend(data.get("rows", []))
    torch = load_json(os.path.join(logs, "torch.json"))
    torch_rows = torch.get("rows", []) if torch else []

    if devices:
        p("")
        p("devices (copy = trit_buffer_copy, bytes read + written; DRAM = memory clock x bus):")
        for label, d in devices.items():
            spec = d.get("spec_dram_gbs") or 0
            copy = d.get("copy_bandwidth_gbs") or 0
            pct = f" = {100 * copy / spec:.0f}% of DRAM {spec:.0f} GB/s" if spec else ""
            cub = f"; cuBLAS: {d['cublas'][:70]}" if d.get("cublas") else ""
            p(f"  {label:<9} {d.get('name', '?')}: copy {copy:.0f} GB/s{pct}{cub}")

    def rows_for(op_prefix):
        return [r for r in bench_rows if r.get("op", "").startswith(op_prefix)]

    gemv = rows_for("gemv")
    cub = {(r["device"], r["shape"], r["variant"].endswith("cold")): r
           for r in rows_for("cublas_gemv") if r.get("state") == "ok"}
    tgemv = {(r["shape"], r["variant"].endswith("cold")): r for r in torch_rows
             if r.get("op") == "gemv" and r.get("state") == "ok"}
    if gemv or cub:
        p("")
        p("GEMV (trit f32 x; cold = weights rotated past the L2; speed-up = baseline / trit):")
        p(f"  {'device':<9} {'shape':<32} {'variant':<15} {'us':>9} {'%copy':>6} {'%floor':>6} "
          f"{'cuBLAS us':>9} {'x':>6} {'torch us':>9} {'x':>6}")
        shown = set()
        for r in gemv:
            cold = r.get("variant", "").endswith("cold")
            if r.get("state") not in ("ok", "mismatch"):
                key = (r["device"], r.get("state"), r.get("note", "")[:60])
                if key not in shown:
                    shown.add(key)
                    p(f"  {r['device']:<9} {r['shape']:<32} {r.get('state')}: "
                      f"{r.get('note', '')[:80]}")
                continue
            has_cold = any(x["shape"] == r["shape"] and x["device"] == r["device"] and
                           x.get("variant", "").endswith("cold") for x in gemv)
            if has_cold and not cold:
                continue  # the cold row is the honest one; the warm ones are in the logs
            c = cub.get((r["device"], r["shape"], cold))
            t = tgemv.get((r["shape"], cold))
            cu_us = c["time_us"] if c else None
            to_us = t["time_us"] if t else None
            mism = "  MISMATCH" if r.get("state") == "mismatch" else ""
            p(f"  {r['device']:<9} {r['shape']:<32} {r['variant']:<15} {r['time_us']:9.1f} "
              f"{r.get('pct_peak', 0):5.0f}% {fmt(r.get('pct_floor'), '{:5.0f}%'):>6} "
              f"{fmt(cu_us):>9} {fmt(cu_us and cu_us / r['time_us'], '{:.2f}x'):>6} "
              f"{fmt(to_us):>9} {fmt(to_us and to_us / r['time_us'], '{:.2f}x'):>6}{mism}")
        if not any(r.get("state") in ("ok", "mismatch") for r in gemv) and cub:
            p("  no trit GEMV row ran; the card's cuBLAS fp16 (cold) for reference:")
            for (dev, shape, cold), c in cub.items():
                if cold:
                    p(f"  {dev:<9} {shape:<32} cuBLAS {c['time_us']:9.1f} us "
                      f"{c.get('pct_peak', 0):5.0f}% of copy, "
                      f"{fmt(c.get('pct_floor'), '{:.0f}%')} of floor")

    attn = [r for r in bench_rows if r.get("op") == "attention"]
    tattn = {}
    for r in torch_rows:
        if r.get("op") == "attention" and r.get("state") == "ok":
            _, backend, dt = r["variant"].split()
            tattn[(r["shape"], dt, backend)] = r
    if attn or tattn:
        p("")
        p("attention (x = SDPA time / trit time; SDPA runs Q/K/V/O in one dtype):")
        p(f"  {'device':<9} {'shape':<40} {'variant':<12} {'us':>10} {'%floor':>6} "
          f"{'flash us':>10} {'x':>6} {'default us':>10} {'x':>6}")
        for r in attn:
            if r.get("state") not in ("ok", "mismatch"):
                p(f"  {r['device']:<9} {r['shape']:<40} {r.get('variant', ''):<12} "
                  f"{r.get('state')}: {r.get('note', '')[:60]}")
                continue
            dt = r["variant"].split()[-1]
            dt = "f16" if dt == "f32" else dt  # SDPA has no f32 flash path; compare with f16
            fl = tattn.get((r["shape"], dt, "flash"))
            de = tattn.get((r["shape"], dt, "default"))
            fl_us = fl["time_us"] if fl else None
            de_us = de["time_us"] if de else None
            mism = "  MISMATCH" if r.get("state") == "mismatch" else ""
            p(f"  {r['device']:<9} {r['shape']:<40} {r['variant']:<12} {r['time_us']:10.1f} "
              f"{fmt(r.get('pct_floor'), '{:5.0f}%'):>6} {fmt(fl_us):>10} "
              f"{fmt(fl_us and fl_us / r['time_us'], '{:.2f}x'):>6} {fmt(de_us):>10} "
              f"{fmt(de_us and de_us / r['time_us'], '{:.2f}x'):>6}{mism}")
        if not attn:
            for (shape, dt, backend), r in sorted(tattn.items()):
                p(f"  {'torch':<9} {shape:<40} {backend + ' ' + dt:<12} {r['time_us']:10.1f} "
                  f"{fmt(r.get('pct_floor'), '{:5.0f}%'):>6}")

    sweep = [r for r in bench_rows if r.get("op") == "sweep" and r.get("state") == "ok"]
    if sweep:
        p("")
        p("cold decode sweep (30 layers x 7 projections of BitNet 2B, N = 1):")
        for r in sweep:
            p(f"  {r['device']:<9} {r['variant']:<16} {r['time_us'] / 1e3:8.3f} ms "
              f"{r.get('pct_peak', 0):5.0f}% of copy {fmt(r.get('pct_floor'), '{:.0f}%')} of floor")

    bad = [r for r in bench_rows if r.get("state") in ("failed", "mismatch")]
    if bench_rows:
        p("")
        p(f"trit-bench rows: {len(bench_rows)}, failed {sum(r['state'] == 'failed' for r in bad)}, "
          f"mismatch {sum(r['state'] == 'mismatch' for r in bad)}, unsupported "
          f"{sum(r.get('state') == 'unsupported' for r in bench_rows)}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
