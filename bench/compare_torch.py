#!/usr/bin/env python3
"""compare_torch.py: PyTorch baselines on the card trit-bench ran on, at trit-bench's shapes.

Attention: torch.nn.functional.scaled_dot_product_attention with the flash backend forced
(torch.nn.attention.sdpa_kernel(SDPBackend.FLASH_ATTENTION)) and with PyTorch's default choice,
at the shapes of trit-bench's attention rows:
  - GPU cases: 32 query / 8 KV heads, head dim 128, Q/K/V/O all f16 or all bf16; causal prefill
    of 2048, 4096, 8192 and 16384 tokens (batch 1) and decode (1 query) over 32768 cached tokens.
  - standing rows: 20 / 5 heads (BitNet b1.58 2B), decode over 4096 tokens (batch 1 and 4),
    causal prefill of 512 and 2048 tokens. trit-bench gives those Q/O in f32 and K/V in f16;
    SDPA wants one dtype, so they run all-f16 here (Q/O bytes are a few % of the total).
GEMV: torch fp16 matmul y = x @ W.T (W [M, K] f16, x [N, K] f16) at trit-bench's GEMV shapes,
warm (one W) and cold (successive calls rotate through copies of W that together exceed 4x the
L2, so W comes from DRAM), like trit-bench's cold rows.

Timing: CUDA events around R calls enqueued back to back (R chosen so a sample lasts about 1 ms,
at most 64), time per call = sample / R; median of the samples after warm-up. trit-bench times the
same way with host clocks around R ops and one sync, so the two agree within the event-vs-host
clock difference (a few us per sample, i.e. per R calls). PyTorch's own per-call cost (Python and
dispatch, ~10-20 us) is included, as trit's API cost is in trit's rows: it decides only cases
whose kernels are shorter than that (small decodes).

Bytes and flops are counted as trit-bench counts them (K and V once, Q and O once; 4 * H * D per
visible query-key pair), so GB/s and TFLOP/s compare directly. Writes a table to stdout and
torch.json / torch.csv into --out. Needs only PyTorch; `--list` prints the cases without it.
Exit status: 0 when every case ran (rows that a backend cannot run say so and do not count as
failures), 1 when a case failed unexpectedly, 3 when torch or a CUDA device is missing.
"""
import argparse
import contextlib
import csv
import json
import math
import os
import statistics
import sys
import time

HEAD_DIM = 128


def attention_cases(quick):
    """(kind, batch, q_len, kv_len, heads, kv_heads, dtype name) for every attention row."""
    cases = []
    gpu_prefill = [4096] if quick else [2048, 4096, 8192, 16384]
    for dt in ("f16", "bf16"):
        cases.append(("decode", 1, 1, 32768, 32, 8, dt))
        for t in gpu_prefill:
            cases.append(("prefill", 1, t, t, 32, 8, dt))
    cases.append(("decode", 1, 1, 4096, 20, 5, "f16"))
    if not quick:
        cases.append(("decode", 4, 1, 4096, 20, 5, "f16"))
    cases.append(("prefill", 1, 512, 512, 20, 5, "f16"))
    if not quick:
        cases.append(("prefill", 1, 2048, 2048, 20, 5, "f16"))
    return cases


GEMV_SHAPES_FULL = [
    ("q/o", 2560, 2560),
    ("k/v", 640, 2560),
    ("gate/up", 6912, 2560),
    ("down", 2560, 6912),
    ("gate+up", 2 * 6912, 2560),  # trit's gated pair as one stacked matrix, as frameworks fuse it
    ("ffn-8b", 4096, 14336),
    ("ffn-70b", 8192, 28672),
]
GEMV_SHAPES_QUICK = [("q/o", 2560, 2560), ("gate+up", 2 * 6912, 2560), ("ffn-70b", 8192, 28672)]


def gemv_cases(quick):
    shapes = GEMV_SHAPES_QUICK if quick else GEMV_SHAPES_FULL
    ns = [1, 4] if quick else [1, 4, 16]
    return [(role, m, k, n) for role, m, k in shapes for n in ns]


def attention_shape_label(kind, batch, q_len, kv_len, heads, kv_heads):
    """The shape string trit-bench prints for the same case."""
    if q_len == 1:
        return f"{kind} S={batch} ctx={kv_len} H{heads}/{kv_heads} D{HEAD_DIM}"
    return f"{kind} S={batch} T={q_len} causal H{heads}/{kv_heads} D{HEAD_DIM}"


def gemv_shape_label(role, m, k, n):
    if role == "gate+up":
        return f"{m // 2}x{k} x2 {role} N={n}"
    return f"{m}x{k} {role} N={n}"


def attention_counts(batch, q_len, kv_len, heads, kv_heads, esize):
    """(bytes, flops) as trit-bench counts them."""
    pairs = batch * sum(kv_len - q_len + i + 1 for i in range(q_len))
    kv_bytes = 2.0 * batch * kv_len * kv_heads * HEAD_DIM * esize
    qo_bytes = 2.0 * batch * q_len * heads * HEAD_DIM * esize
    return kv_bytes + qo_bytes, 4.0 * heads * HEAD_DIM * pairs


def gemv_counts(m, k, n):
    """(bytes, flops) of the f16 dense GEMV."""
    return 2.0 * m * k + 2.0 * n * k + 2.0 * n * m, 2.0 * m * k * n


def reps_for(single_s):
    """Calls per timed sample: about 1 ms per sample, 1..64 (trit-bench's rule)."""
    if not single_s > 0:
        return 1
    return max(1, min(64, math.ceil(1e-3 / single_s)))


def runtime_clocks(ordinal):
    """(memory clock kHz, bus width bits, SM clock kHz) from cudaDeviceGetAttribute, or None."""
    import ctypes
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            rt = ctypes.CDLL(name)
        except OSError:
            continue
        out = []
        for attr in (36, 37, 13):  # MemoryClockRate, GlobalMemoryBusWidth, ClockRate
            v = ctypes.c_int(0)
            if rt.cudaDeviceGetAttribute(ctypes.byref(v), attr, ordinal) != 0:
                return None
            out.append(v.value)
        return tuple(out)
    return None


def format_table(rows):
    head = (f"{'op':<10} {'shape':<38} {'variant':<22} {'time_us':>10} {'GB/s':>9} "
            f"{'TFLOP/s':>8} {'%floor':>7}  note")
    out = [head]
    for r in rows:
        if r.get("time_us") is None:
            out.append(f"{r['op']:<10} {r['shape']:<38} {r['variant']:<22} {r.get('note', '')}")
            continue
        pf = f"{r['pct_floor']:6.1f}%" if r.get("pct_floor") else f"{'-':>7}"
        out.append(f"{r['op']:<10} {r['shape']:<38} {r['variant']:<22} {r['time_us']:10.1f} "
                   f"{r['gbs']:9.1f} {r['tflops']:8.2f} {pf}  {r.get('note', '')}")
    return "\n".join(out)


def finish_row(row, bytes_, flops, spec_gbs, spec_tflops):
    t = row["time_us"] * 1e-6
    row["bytes"] = bytes_
    row["flops"] = flops
    row["gbs"] = bytes_ / t * 1e-9
    row["tflops"] = flops / t * 1e-12
    floor = max(bytes_ / (spec_gbs * 1e9) if spec_gbs else 0.0,
                flops / (spec_tflops * 1e12) if spec_tflops else 0.0)
    if floor > 0:
        row["floor_us"] = floor * 1e6
        row["pct_floor"] = 100.0 * floor / t
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=".", help="directory for torch.json and torch.csv")
    ap.add_argument("--quick", action="store_true", help="fewer shapes, shorter timing")
    ap.add_argument("--min-time", type=float, default=None,
                    help="seconds of timed samples per case (default 0.2, --quick 0.05)")
    ap.add_argument("--op", default="all", choices=["all", "attention", "gemv"])
    ap.add_argument("--list", action="store_true", help="print the cases and exit (no torch)")
    args = ap.parse_args()
    min_time = args.min_time if args.min_time is not None else (0.05 if args.quick else 0.2)
    do_attn = args.op in ("all", "attention")
    do_gemv = args.op in ("all", "gemv")

    if args.list:
        if do_attn:
            for c in attention_cases(args.quick):
                print("attention", attention_shape_label(*c[:6]), c[6])
        if do_gemv:
            for c in gemv_cases(args.quick):
                print("gemv", gemv_shape_label(*c), "f16")
        return 0

    try:
        import torch
    except ImportError as e:
        print(f"compare_torch: PyTorch is not installed here ({e}); nothing to compare")
        return 3
    if not torch.cuda.is_available():
        print("compare_torch: torch sees no CUDA device; nothing to compare")
        return 3
    import torch.nn.functional as F
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        SDPBackend = sdpa_kernel = None

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    # The card's DRAM bandwidth and f16 tensor peak, as trit-bench computes them, when this
    # PyTorch exposes the clocks (older ones do not: then there are no floors).
    mem_clock_khz = getattr(props, "memory_clock_rate", 0) or 0
    bus_bits = getattr(props, "memory_bus_width", 0) or 0
    clock_khz = getattr(props, "clock_rate", 0) or 0
    if not (mem_clock_khz and bus_bits and clock_khz):
        # Builds against CUDA 13 dropped the clocks from cudaDeviceProp: ask the runtime that
        # PyTorch loaded (same soname, so dlopen returns the loaded copy).
        mem_clock_khz, bus_bits, clock_khz = runtime_clocks(torch.cuda.current_device()) or (0, 0, 0)
    spec_gbs = 2.0 * mem_clock_khz * 1e3 * bus_bits / 8 * 1e-9 if mem_clock_khz and bus_bits else 0
    per_sm = {8: 2048, 9: 4096}.get(props.major, 0)
    spec_tflops = props.multi_processor_count * clock_khz * 1e3 * per_sm * 1e-12
    info = {
        "device": props.name,
        "capability": f"{props.major}.{props.minor}",
        "sms": props.multi_processor_count,
        "l2_bytes": l2,
        "memory_bytes": props.total_memory,
        "spec_dram_gbs": spec_gbs or None,
        "spec_f16_tensor_tflops": spec_tflops or None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "min_time_s": min_time,
    }
    print(f"# compare_torch: {props.name} (sm_{props.major}{props.minor}, "
          f"{props.multi_processor_count} SMs, L2 {l2 / 1e6:.1f} MB), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    if spec_gbs:
        print(f"# floors: DRAM {spec_gbs:.0f} GB/s, f16 tensor {spec_tflops:.0f} TFLOP/s "
              f"(from the device properties, as trit-bench)")

    start_ev = torch.cuda.Event(enable_timing=True)
    end_ev = torch.cuda.Event(enable_timing=True)

    def time_fn(fn):
        """Median seconds per call: warm-up, R calls per event-timed sample."""
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        reps = reps_for(time.perf_counter() - t0)
        w0 = time.perf_counter()
        while time.perf_counter() - w0 < 0.05:
            for _ in range(reps):
                fn()
            torch.cuda.synchronize()
        samples = []
        s0 = time.perf_counter()
        while len(samples) < 10 or time.perf_counter() - s0 < min_time:
            start_ev.record()
            for _ in range(reps):
                fn()
            end_ev.record()
            end_ev.synchronize()
            samples.append(start_ev.elapsed_time(end_ev) * 1e-3 / reps)
            if len(samples) >= 3 and time.perf_counter() - s0 > 3.0:
                break
        return statistics.median(samples), reps

    rows = []
    failures = 0

    def emit(row):
        rows.append(row)
        print(format_table([row]).split("\n")[1], flush=True)

    print(format_table([]))
    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16}

    if do_attn:
        gen = torch.Generator(device=dev)
        gen.manual_seed(0xa77e)
        for kind, batch, q_len, kv_len, heads, kv_heads, dt in attention_cases(args.quick):
            shape = attention_shape_label(kind, batch, q_len, kv_len, heads, kv_heads)
            dtype = dtypes[dt]
            q = torch.rand(batch, heads, q_len, HEAD_DIM, device=dev, dtype=dtype,
                           generator=gen) * 2 - 1
            k = torch.rand(batch, kv_heads, kv_len, HEAD_DIM, device=dev, dtype=dtype,
                           generator=gen) * 2 - 1
            v = torch.rand(batch, kv_heads, kv_len, HEAD_DIM, device=dev, dtype=dtype,
                           generator=gen) * 2 - 1
            # Decode: one query sees every key, so no mask (PyTorch's is_causal aligns the mask
            # top-left, which would hide all keys but the first). Prefill: q_len == kv_len, where
            # top-left and bottom-right causal masks agree.
            causal = q_len > 1
            # GQA: SDPA's enable_gqa where this PyTorch and backend take it, else K/V repeated
            # per query head (which moves more bytes; the row says so).
            reps_kv = {}

            def gqa_call():
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

            def repeated_call():
                if "k" not in reps_kv:
                    reps_kv["k"] = k.repeat_interleave(heads // kv_heads, dim=1)
                    reps_kv["v"] = v.repeat_interleave(heads // kv_heads, dim=1)
                return F.scaled_dot_product_attention(q, reps_kv["k"], reps_kv["v"],
                                                      is_causal=causal)

            bytes_, flops = attention_counts(batch, q_len, kv_len, heads, kv_heads, 2)
            ref = None
            for backend in ("flash", "default"):
                variant = f"sdpa {backend} {dt}"
                if backend == "flash" and sdpa_kernel is None:
                    emit({"op": "attention", "shape": shape, "variant": variant,
                          "state": "unsupported",
                          "note": "unsupported: this PyTorch has no torch.nn.attention.sdpa_kernel"})
                    continue
                ctx = (sdpa_kernel(SDPBackend.FLASH_ATTENTION) if backend == "flash"
                       else contextlib.nullcontext())
                note, out, errors = "", None, []
                with ctx:
                    for fn, fn_note in ((gqa_call, ""),
                                        (repeated_call, "K/V repeated per query head")):
                        try:
                            out = fn()
                            torch.cuda.synchronize()
                            med, reps = time_fn(fn)
                            note = fn_note
                            break
                        except (TypeError, RuntimeError) as e:
                            errors.append(str(e).strip().split("\n")[0][:120])
                            out = None
                if out is None:
                    emit({"op": "attention", "shape": shape, "variant": variant,
                          "state": "unsupported", "note": "unsupported: " + " / ".join(errors)})
                    continue
                out = out.float()
                if ref is None:
                    ref, err = out, 0.0
                else:
                    err = ((out - ref).norm() / ref.norm()).item()
                    if err > 1e-2:
                        note = (note + "; " if note else "") + f"differs from flash by {err:.2g}"
                row = {"op": "attention", "shape": shape, "variant": variant, "state": "ok",
                       "time_us": med * 1e6, "ops_per_sync": reps, "rel_diff_vs_first": err,
                       "note": note}
                emit(finish_row(row, bytes_, flops, spec_gbs, spec_tflops))
                del out
            del q, k, v, reps_kv, ref
            torch.cuda.empty_cache()

    if do_gemv:
        gen = torch.Generator(device=dev)
        gen.manual_seed(0x7e57)
        cold_target = max(256 << 20, 4 * l2)
        for role, m, k, n in gemv_cases(args.quick):
            shape = gemv_shape_label(role, m, k, n)
            # Ternary weights at scale 0.5, as trit-bench's, in f16.
            w = (torch.randint(0, 3, (m, k), device=dev, generator=gen).to(torch.float16) - 1) * 0.5
            x = torch.rand(n, k, device=dev, dtype=torch.float16, generator=gen) * 2 - 1
            copies = max(2, math.ceil(cold_target / (2 * m * k)))
            try:
                ws = [w] + [w.clone() for _ in range(copies - 1)]
            except RuntimeError as e:
                ws = None
                cold_note = f"cold copies: {str(e).splitlines()[0][:100]}"
            bytes_, flops = gemv_counts(m, k, n)
            for cold in (False, True):
                variant = "torch f16 matmul" + (" cold" if cold else "")
                try:
                    if cold:
                        if ws is None:
                            raise RuntimeError(cold_note)
                        it = [0]

                        def fn(it=it):
                            i = it[0]
                            it[0] = (i + 1) % len(ws)
                            return x @ ws[i].t()
                    else:
                        def fn():
                            return x @ w.t()
                    med, reps = time_fn(fn)
                except Exception as e:
                    failures += 1
                    emit({"op": "gemv", "shape": shape, "variant": variant, "state": "failed",
                          "note": f"FAILED: {str(e).splitlines()[0][:160]}"})
                    continue
                note = f"{len(ws)} copies, {len(ws) * 2 * m * k / 1e6:.0f} MB" if cold else ""
                row = {"op": "gemv", "shape": shape, "variant": variant, "state": "ok",
                       "time_us": med * 1e6, "ops_per_sync": reps, "note": note}
                emit(finish_row(row, bytes_, flops, spec_gbs, spec_tflops))
            del w, x, ws
            torch.cuda.empty_cache()

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "torch.json"), "w") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
    fields = ["op", "shape", "variant", "state", "time_us", "gbs", "tflops", "pct_floor",
              "floor_us", "bytes", "flops", "ops_per_sync", "note"]
    with open(os.path.join(args.out, "torch.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow(r)
    print(f"# wrote {os.path.join(args.out, 'torch.json')} and torch.csv ({len(rows)} rows)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
