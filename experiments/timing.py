"""Small timing helpers shared by the benchmark modules (wall clock, best of repeats)."""
import time

CNN_FORWARD_FLOPS = 23_984_896  # seed's CNN, per 28x28x1 image: conv1 + conv2 + dense1 + preds


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(fn, repeats: int = 5) -> float:
    """Best wall time of fn() over repeats (fn must block until its result is ready)."""
    return min(seconds(fn) for _ in range(repeats))


def format_row(row: dict) -> str:
    parts = [f"{row['name']:<48}", f"{row['seconds'] * 1e3:9.1f} ms"]
    if row.get("compile_s") is not None:
        parts.append(f"compile {row['compile_s']:.2f}s")
    for key, fmt in (("images_per_s", "{:.0f} img/s"), ("forward_equiv", "{:.2f}x fwd"),
                     ("ratio", "ratio {:.2f}"), ("gflops", "{:.1f} GFLOP/s"),
                     ("pct_of_peak", "{:.0f}% of peak")):
        if row.get(key) is not None:
            parts.append(fmt.format(row[key]))
    if row.get("settings"):
        parts.append(f"[{row['settings']}]")
    return "  ".join(parts)
