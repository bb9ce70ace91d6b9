#!/usr/bin/env python3
"""Render the README's chart of the demo from a live scrape.

Runs the demo server (`cargo run --example inference_server`) on two free loopback ports,
drives it with the load generator (`cargo run -p llm-span-testkit --bin load-generator --
--requests 200 --concurrency 8`), scrapes its /metrics once, and writes

  docs/demo-chart.svg   time to first token and decode speed (tokens per second) per model:
                        the median and the 90th percentile, interpolated within the buckets
                        as PromQL's histogram_quantile does, and the exact mean (_sum / _count)
  docs/demo-metrics.txt the scrape itself, as served (text format 0.0.4)

Plain Python 3, no packages: the SVG is written by hand. Usage, from anywhere:

  scripts/demo-chart.py [--requests N] [--concurrency C] [--out DIR]
  scripts/demo-chart.py --from-scrape docs/demo-metrics.txt   # re-render a saved scrape

Nothing is made up: every number in the chart comes from the scrape it writes next to it.
"""

import argparse
import datetime
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cargo(*args):
    return ["cargo", *args]


def wait_for(url, seconds, proc):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the demo server exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not answer within {seconds} s")


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Samples of a text-format scrape: (name, {label: value}, float)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            sys.exit(f"unexpected line in the scrape: {line!r}")
        labels = dict(LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def histograms(samples, family):
    """Per model: (sorted [(le, cumulative count)], sum, count)."""
    out = {}
    for name, labels, value in samples:
        model = labels.get("model")
        if model is None:
            continue
        h = out.setdefault(model, {"buckets": [], "sum": 0.0, "count": 0.0})
        if name == family + "_bucket":
            h["buckets"].append((float(labels["le"]), value))
        elif name == family + "_sum":
            h["sum"] = value
        elif name == family + "_count":
            h["count"] = value
    for h in out.values():
        h["buckets"].sort()
    return {m: h for m, h in out.items() if h["count"] > 0}


def quantile(q, buckets):
    """PromQL's histogram_quantile: linear interpolation within the bucket that holds q."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # the highest finite bound, as PromQL answers
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return float("nan")


def fmt(value, unit):
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    return f"{value:.3g}"


def ticks_for(lo, hi, log):
    """Tick values spanning [lo, hi]: powers of ten on a log axis, 1-2-5 steps on a linear one."""
    if log:
        return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    raw = hi / 5
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)
                if m * 10 ** math.floor(math.log10(raw)) >= raw))
    return [step * i for i in range(0, int(hi / step) + 2)]


def panel(x0, y0, width, title, unit, rows, log):
    """One horizontal bar panel; rows = [(model, p50, p90, mean)]. Returns SVG elements."""
    label_w, bar_h, gap = 170, 13, 16
    plot_w = width - label_w - 60
    values = [v for _, p50, p90, mean in rows for v in (p50, p90, mean) if v > 0]
    ticks = ticks_for(min(values), max(values), log)
    lo, hi = (ticks[0], ticks[-1]) if log else (0.0, ticks[-1])
    if log:
        pos = lambda v: plot_w * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    else:
        pos = lambda v: plot_w * v / hi
    el = [f'<text x="{x0}" y="{y0}" class="title">{escape(title)}</text>']
    top = y0 + 14
    y = top + 8
    for model, p50, p90, mean in rows:
        el.append(f'<text x="{x0}" y="{y + bar_h + 4}" class="model">{escape(model)}</text>')
        for i, (value, cls) in enumerate(((p50, "p50"), (p90, "p90"))):
            w = max(1.0, pos(value))
            by = y + i * bar_h
            el.append(f'<rect x="{x0 + label_w}" y="{by}" width="{w:.1f}" height="{bar_h - 2}" class="{cls}"/>')
            el.append(f'<text x="{x0 + label_w + w + 4:.1f}" y="{by + bar_h - 3}" class="value">'
                      f'{cls} {fmt(value, unit)}</text>')
        mx = x0 + label_w + pos(mean)
        el.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{y - 3}" y2="{y + 2 * bar_h + 1}" class="mean"/>')
        y += 2 * bar_h + gap
    bottom = y - gap + 6
    for t in ticks:
        tx = x0 + label_w + pos(t)
        el.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{bottom}" class="grid"/>')
        el.append(f'<text x="{tx:.1f}" y="{bottom + 12}" class="tick" text-anchor="middle">{fmt(t, unit)}</text>')
    el.append(f'<line x1="{x0 + label_w}" x2="{x0 + label_w}" y1="{top}" y2="{bottom}" class="axis"/>')
    return el, bottom + 30


def svg(ttft, tps, caption):
    models = sorted(set(ttft) | set(tps))
    width, col = 960, 470
    rows_ttft = [(m, quantile(0.5, ttft[m]["buckets"]), quantile(0.9, ttft[m]["buckets"]),
                  ttft[m]["sum"] / ttft[m]["count"]) for m in models if m in ttft]
    rows_tps = [(m, quantile(0.5, tps[m]["buckets"]), quantile(0.9, tps[m]["buckets"]),
                 tps[m]["sum"] / tps[m]["count"]) for m in models if m in tps]
    left, y1 = panel(10, 24, col, "Time to first token (llm_ttft_seconds), log scale", "s", rows_ttft, True)
    right, y2 = panel(10 + col + 10, 24, col, "Decode speed (llm_tokens_per_second), tokens/s", "tok/s",
                      rows_tps, False)
    height = max(y1, y2) + 10 + 16 * len(caption)
    foot = [f'<text x="10" y="{max(y1, y2) + 6 + 16 * i}" class="caption">{escape(line)}</text>'
            for i, line in enumerate(caption)]
    style = """
    text { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; fill: #222; }
    .title { font-size: 14px; font-weight: bold; }
    .model { font-size: 12px; }
    .value { font-size: 10px; fill: #444; }
    .caption { font-size: 11px; fill: #555; }
    .p50 { fill: #3b6fb6; }
    .p90 { fill: #9dbbe3; }
    .mean { stroke: #c0392b; stroke-width: 2; }
    .axis { stroke: #888; stroke-width: 1; }
    .grid { stroke: #e4e4e4; stroke-width: 1; }
    .tick { font-size: 10px; fill: #666; }
    """
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}">',
        f"<style>{style}</style>",
        f'<rect width="{width}" height="{height:.0f}" fill="white"/>',
        *left, *right, *foot, "</svg>", ""])


def run_demo(requests, concurrency):
    """Runs the demo and the load generator; returns (the load generator's summary, the scrape)."""
    env = dict(os.environ)
    env.setdefault("CARGO_BUILD_JOBS", "2")
    env.pop("LLM_METRICS_LISTEN", None)
    # Build first, so that the server's start-up is not a compilation.
    for cmd in (cargo("build", "--example", "inference_server"),
                cargo("build", "-p", "llm-span-testkit", "--bin", "load-generator")):
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)

    api, metrics = free_port(), free_port()
    server = subprocess.Popen(
        cargo("run", "--quiet", "--example", "inference_server", "--",
              "--listen", f"127.0.0.1:{api}", "--metrics-listen", f"127.0.0.1:{metrics}"),
        cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{metrics}/health", 60, server)
        wait_for(f"http://127.0.0.1:{api}/health", 60, server)
        load = subprocess.run(
            cargo("run", "--quiet", "-p", "llm-span-testkit", "--bin", "load-generator", "--",
                  "--target", f"http://127.0.0.1:{api}", "--requests", str(requests),
                  "--concurrency", str(concurrency), "--quiet"),
            cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as r:
            scrape = r.read().decode()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    return load.stdout, scrape


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--from-scrape", metavar="FILE",
                    help="render a scrape this script wrote before (docs/demo-metrics.txt) instead of running the demo")
    args = ap.parse_args()

    if args.from_scrape:
        with open(args.from_scrape) as f:
            scrape = f.read()
        first = scrape.splitlines()[0] if scrape else ""
        if not first.startswith("# demo-chart.py: "):
            sys.exit(f"{args.from_scrape} was not written by this script (no '# demo-chart.py:' line)")
        origin = first[len("# demo-chart.py: "):]
        summary = ""
    else:
        summary, served = run_demo(args.requests, args.concurrency)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        origin = (f"load-generator --requests {args.requests} --concurrency {args.concurrency}, "
                  f"scraped {stamp}")
        # A comment line, which the text format allows: where this scrape came from.
        scrape = f"# demo-chart.py: {origin}\n" + served

    samples = parse(scrape)
    ttft = histograms(samples, "llm_ttft_seconds")
    tps = histograms(samples, "llm_tokens_per_second")
    if not ttft or not tps:
        sys.exit("the scrape has no llm_ttft_seconds or llm_tokens_per_second samples")
    ok = sum(v for n, l, v in samples if n == "llm_requests_total" and l.get("status") == "ok")
    total = sum(v for n, l, v in samples if n == "llm_requests_total")
    caption = [
        f"One scrape of the demo (examples/inference_server, its default models): {total:.0f} requests, "
        f"{ok:.0f} ok;",
        f"{origin}.",
        "Dark bar: median, light bar: 90th percentile, both interpolated within the buckets as "
        "histogram_quantile does; red line: exact mean (_sum / _count).",
        "Written by scripts/demo-chart.py from the scrape it saved in docs/demo-metrics.txt.",
    ]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "demo-chart.svg"), "w") as f:
        f.write(svg(ttft, tps, caption))
    if not args.from_scrape:
        with open(os.path.join(args.out, "demo-metrics.txt"), "w") as f:
            f.write(scrape)
    print(summary, end="")
    for model in sorted(ttft):
        print(f"{model}: ttft p50 {quantile(0.5, ttft[model]['buckets']):.4f} s, "
              f"p90 {quantile(0.9, ttft[model]['buckets']):.4f} s; tokens/s p50 "
              f"{quantile(0.5, tps[model]['buckets']) if model in tps else float('nan'):.1f}")
    print(f"wrote {os.path.join(args.out, 'demo-chart.svg')}")


if __name__ == "__main__":
    main()
