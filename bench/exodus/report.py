"""BENCHMARKS.md section (markdown tables) and PNG plots under bench/results/ for exodus runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.exodus.check import Verdict, pct
from bench.exodus.driver import Timeline
from bench.stored import RESULTS


@dataclass
class RunResult:
    label: str  # "1 replica", "2 replicas", "chaos (2 replicas)"
    replicas: int
    chaos: bool
    users: int
    factor: float
    verdict: Verdict
    timeline: Timeline
    peak_rss_mb: dict[str, float]
    missing_services: list[str]
    not_ready: list[str]
    wall_s: float
    throughput: dict[str, float] = field(default_factory=dict)  # durable -> acked msgs/s
    # process (service over its replicas, server, the bench itself) -> CPU seconds of the day
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_capacity_s: float = 0.0  # the day's wall seconds x the machine's cores
    calibration_s: float = 0.0  # the machine's speed through the day (bench.exodus.calibration)


def throughput(tl: Timeline) -> dict[str, float]:
    """Messages acked per wall second by each durable between the first and last sample."""
    if len(tl.lag) < 2:
        return {}
    first = tl.lag[0]
    out = {}
    for k in first:
        if k == "t":
            continue
        # NOTE: each durable's own last sample: a sample whose reading timed out lacks it.
        last = next(s for s in reversed(tl.lag) if k in s)
        done = last[k][1] - first[k][1]
        busy = [s["t"] for s in tl.lag if k in s and s[k][0] > 0]
        span = (max(busy) - tl.t0) if busy else (last["t"] - first["t"])
        out[k] = done / span if span > 0 else float("nan")
    return out


def lateness(tl: Timeline, bin_s: float = 300.0) -> list[dict[str, float]]:
    """How late the driver began its steps, per `bin_s` of the day (by scheduled time): the
    day's load as offered, next to the one the population asked for."""
    bins: dict[int, list[float]] = {}
    for at, late in tl.late:
        bins.setdefault(int((at - tl.t0) // bin_s), []).append(late)
    return [
        {
            "from_s": b * bin_s,
            "to_s": (b + 1) * bin_s,
            "steps": len(v),
            "p50_s": pct(v, 0.5),
            "max_s": max(v),
        }
        for b, v in sorted(bins.items())
    ]


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def plots(results: list[RunResult], prefix: str = "exodus") -> list[Path]:
    """Lag per stage for each run, and the latency ratio CDF; names start with `prefix`
    (`exodus`, `exodus-quick`, `exodus-chaos`...) so a quick run never overwrites a full one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for r in results:
        tl = r.timeline
        if not tl.lag:
            continue
        fig, ax = plt.subplots(figsize=(8, 4))
        durables = sorted({k for s in tl.lag for k in s if k != "t"})
        for d in durables:
            xs = [(s["t"] - tl.t0) * r.factor / 3600 for s in tl.lag if d in s]
            ys = [s[d][0] for s in tl.lag if d in s]
            ax.plot(xs, ys, label=d)
        for t, what in tl.chaos:
            ax.axvline((t - tl.t0) * r.factor / 3600, color="grey", alpha=0.3)
            ax.text(
                (t - tl.t0) * r.factor / 3600,
                ax.get_ylim()[1] * 0.02,
                what,
                rotation=90,
                fontsize=6,
                va="bottom",
                alpha=0.7,
            )
        ax.set_xlabel("network hours since the start of the day")
        ax.set_ylabel("pending + unacked messages")
        ax.set_title(f"exodus: consumer lag per stage ({r.label})")
        ax.legend(fontsize=7)
        path = (
            RESULTS
            / f"{prefix}-lag-{r.label.replace(' ', '-').replace('(', '').replace(')', '')}.png"
        )
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    r0 = next((r for r in results if r.verdict.ratios), None)
    if r0 is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in results:
            if r.verdict.ratios:
                s = sorted(r.verdict.ratios)
                ax.plot(s, [i / len(s) for i in range(1, len(s) + 1)], label=r.label)
        ax.axvline(1.1, color="red", alpha=0.5, label="target 1.1")
        ax.set_xscale("log")
        ax.set_xlabel("upload-to-last-follow / earliest (pipeline floor and pace, limits)")
        ax.set_ylabel("share of users x networks")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = RESULTS / f"{prefix}-latency-ratio-cdf.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    return out


def markdown(results: list[RunResult], images: list[Path], command: str) -> str:
    lines = [
        "## exodus",
        "",
        f"Command: `{command}`. Whole pipeline, every service its own process, against simulated",
        "Bluesky PDSs and Mastodon instances enforcing ARCHITECTURE §6 limits with time",
        "compressed by the factor below. Users are driven on the bus (see bench/exodus/driver.py).",
        "Ratios are to limits or baselines measured in the same run. A person's minimum",
        "(earliest) is what the limits allow a client as fast as this pipeline: its floor (time",
        "to a first follow of the first arrivals), then no faster than its pace (the fastest 100",
        "consecutive follows of one account in the run), inside the limits' windows.",
        "",
        "| run | users | factor | required follows | made / allowed | violations | duplicates |"
        " lost | after-erase | limit-bound users | p99 / minimum (floor, pace, limits) |"
        " p99 / limits alone | raw archives left | DLQ (unexpected) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        v = r.verdict
        lines.append(
            f"| {r.label} | {r.users} | {r.factor:g} | {v.required} | {_f(v.made_over_allowed, 3)}"
            f" ({v.made_required}/{v.allowed}) | {sum(v.violations.values())} | {v.duplicates} |"
            f" {len(v.lost)} (+{v.deferred} waiting for a limit window) | {v.erased_violations} |"
            f" {len(v.bound_ratios)} |"
            f" {_f(pct(v.bound_ratios, 0.99))} | {_f(pct(v.limits_only_ratios, 0.99))} |"
            f" {v.objects_left} | {v.dlq_total}"
            f" ({len(v.dlq_unexpected)}) |"
        )
    lines += [
        "",
        "Upload-to-last-follow (forward matches) in network minutes, and the limits' minimum:",
        "",
    ]
    lines += [
        "| run | pipeline floor (wall s); pace (wall ms a follow) | p50 | p99 | p50 minimum |"
        " p99 minimum | p50 / earliest | p99 / earliest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        v, k = r.verdict, r.factor / 60
        floor = ", ".join(
            f"{n} {_f(f, 2)}; {_f(v.pace.get(n, 0.0) * 1000, 1)} ms"
            for n, f in sorted(v.floor.items())
        )
        lines.append(
            f"| {r.label} | {floor or 'n/a'} | {_f(pct(v.latency, 0.5) * k, 1)} |"
            f" {_f(pct(v.latency, 0.99) * k, 1)} | {_f(pct(v.minimum, 0.5) * k, 1)} |"
            f" {_f(pct(v.minimum, 0.99) * k, 1)} | {_f(pct(v.ratios, 0.5))} |"
            f" {_f(pct(v.ratios, 0.99))} |"
        )
    lines.append("")
    for r in results:
        v, k = r.verdict, r.factor / 60
        lines.append(
            f"- {r.label}: late joiners (a friend links after the person): friend's link to the"
            f" follow p50 {_f(pct(v.reverse_latency, 0.5) * k, 1)} / p99"
            f" {_f(pct(v.reverse_latency, 0.99) * k, 1)} network min"
            f" ({_f(pct(v.reverse_latency, 0.5), 1)} / {_f(pct(v.reverse_latency, 0.99), 1)}"
            f" wall s), {len(v.reverse_latency)} follows; the matcher holds them for a settle"
            " and while a batch of the follower is still in flight."
        )
        if v.unfinished:
            lines.append(
                f"- {r.label}: {len(v.unfinished)} people whose last forward follow the limits"
                " allow only after the run's end (Mastodon's daily cap) are left out of the"
                " latency figures."
            )
    lines += _bound_table(results)
    durables = sorted({d for r in results for d in r.throughput})
    if durables:
        lines += [
            "",
            "Throughput (messages acked per wall second) and peak RSS (MB, max over replicas):",
            "",
        ]
        lines += ["| stage | " + " | ".join(r.label for r in results) + " |"]
        lines += ["|---|" + "---|" * len(results)]
        for d in durables:
            lines.append(
                f"| {d} | "
                + " | ".join(_f(r.throughput.get(d, float("nan"))) for r in results)
                + " |"
            )
        services = sorted({s for r in results for s in r.peak_rss_mb})
        for s in services:
            lines.append(
                f"| RSS {s} | "
                + " | ".join(_f(r.peak_rss_mb.get(s, float("nan")), 0) for r in results)
                + " |"
            )
        one = next((r for r in results if r.replicas == 1 and not r.chaos), None)
        two = next((r for r in results if r.replicas == 2 and not r.chaos), None)
        if one and two:
            lines += [
                "",
                "2 vs 1 replicas, acked msgs/s ratio: "
                + ", ".join(
                    f"{d} {_f(two.throughput.get(d, float('nan')) / one.throughput[d])}"
                    for d in durables
                    if one.throughput.get(d)
                ),
            ]
    lines += _cpu_table(results)
    for r in results:
        notes = []
        if r.missing_services:
            notes.append(
                f"services without an entry point (not run): {', '.join(r.missing_services)}"
            )
            if "ingest" in r.missing_services:
                notes.append(
                    "INGEST STAND-IN: the driver stored each graph from the population and"
                    " published graph.ingested / archive.rejected itself (zips not parsed)"
                )
        if r.not_ready:
            notes.append(f"replicas not ready: {', '.join(r.not_ready)}")
        if r.timeline.failures:
            notes.append(
                f"driver steps that failed: {len(r.timeline.failures)}"
                f" (first: {r.timeline.failures[0]})"
            )
        if r.timeline.retried:
            notes.append(
                "driver retries: " + ", ".join(f"{k} x{n}" for k, n in r.timeline.retried.items())
            )
        if r.timeline.drained_at is None:
            last = r.timeline.lag[-1] if r.timeline.lag else {}
            busy = ", ".join(f"{k}={v[0]}" for k, v in last.items() if k != "t" and v[0])
            notes.append(f"the pipeline did NOT drain before the deadline ({busy})")
        if late := lateness(r.timeline):
            worst = max(late, key=lambda b: b["p50_s"])
            notes.append(
                f"driver lateness (step begun after its scheduled time): worst at day s"
                f" {worst['from_s']:.0f}-{worst['to_s']:.0f}"
                f" p50 {_f(worst['p50_s'], 1)} s, max {_f(max(b['max_s'] for b in late), 1)} s"
            )
        if r.timeline.chaos:
            notes.append("chaos: " + ", ".join(w for _, w in r.timeline.chaos))
        checks = r.verdict.passed()
        verdicts = {True: "PASS", False: "FAIL", None: "n/a"}
        notes.append("checks: " + ", ".join(f"{k} {verdicts[ok]}" for k, ok in checks.items()))
        lines += ["", f"- **{r.label}** ({r.wall_s:.0f} s wall): " + "; ".join(notes)]
    for img in images:
        lines += ["", f"![{img.stem}](bench/results/{img.name})"]
    return "\n".join(lines)


def _bound_table(results: list[RunResult]) -> list[str]:
    """Each limit-bound person, slowest last: their ratio to the earliest, split into the speed
    the run gave them (their earliest at their own first follow and pace, over the earliest)
    and what was lost at that speed (latency over that own earliest)."""
    lines: list[str] = []
    for r in results:
        if not r.verdict.bound:
            continue
        lines += [
            "",
            f"{r.label}: limit-bound people, wall s; own: at their own first follow and fastest"
            " run of follows (ratio = own speed x scheduling at it):",
            "",
            "| person | day s | follows | latency | earliest | ratio | first follow | own pace ms"
            " | own earliest / earliest | latency / own earliest |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for user, net, n, at, lat, _m, e in sorted(r.verdict.bound, key=lambda b: b[4] / b[6]):
            st = r.verdict.bound_stages.get(f"{user} {net}", {})
            own = st.get("own_earliest_s", math.nan)
            lines.append(
                f"| {user} {net} | {at:,.0f} | {n} | {_f(lat, 1)} | {_f(e, 2)} | {_f(lat / e)} |"
                f" {_f(st.get('to_first_follow_s', math.nan), 2)} |"
                f" {_f(st.get('own_pace_s', math.nan) * 1000, 1)} | {_f(own / e)} |"
                f" {_f(lat / own if own else math.nan)} |"
            )
    return lines


def _cpu_table(results: list[RunResult]) -> list[str]:
    """Where the cores went: each process's CPU seconds as a share of the machine's capacity
    over the day (wall x cores), and per 1,000 follows made."""
    last = results[-1].cpu_s
    names = sorted({n for r in results for n in r.cpu_s}, key=lambda n: -last.get(n, 0.0))
    if not names:
        return []
    lines = [
        "",
        "CPU: share of the machine (wall x cores over the day and drain) / seconds per 1,000"
        " follows made:",
        "",
        "| process | " + " | ".join(r.label for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    rows = [*names, "total"]
    for n in rows:
        cells = []
        for r in results:
            used = sum(r.cpu_s.values()) if n == "total" else r.cpu_s.get(n, float("nan"))
            share = used / r.cpu_capacity_s if r.cpu_capacity_s else float("nan")
            per_k = used / r.verdict.made_required * 1000 if r.verdict.made_required else math.nan
            cells.append(f"{_f(share)} / {_f(per_k)}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    for r in results:
        if r.calibration_s and r.verdict.made_required:
            per_k = sum(r.cpu_s.values()) / r.verdict.made_required * 1000
            lines += [
                "",
                f"- {r.label}: the machine did a fixed piece of Python work in"
                f" {r.calibration_s * 1000:.1f} ms of CPU, median of"
                f" {len(r.timeline.speed)} readings through the day"
                f" ({min(r.timeline.speed, default=0) * 1000:.1f}-"
                f"{max(r.timeline.speed, default=0) * 1000:.1f}; bench/exodus/calibration.py);"
                f" CPU per 1,000 follows in those units: {per_k / r.calibration_s:,.0f}"
                " (comparable from machine to machine)",
            ]
    return lines


def summary(results: list[RunResult]) -> str:
    parts = []
    for r in results:
        v = r.verdict
        parts.append(
            f"[{r.label}] made/allowed={_f(v.made_over_allowed, 3)}"
            f" violations={sum(v.violations.values())}"
            f" dup={v.duplicates} lost={len(v.lost)} deferred={v.deferred}"
            f" p99/min={_f(pct(v.bound_ratios, 0.99))}"
            f" p99/limits={_f(pct(v.limits_only_ratios, 0.99))}"
            f" p99/earliest(all)={_f(pct(v.ratios, 0.99))}"
        )
    return "exodus: " + " ".join(parts)


def as_json(results: list[RunResult]) -> list[dict[str, Any]]:
    return [
        {
            "label": r.label,
            "required": r.verdict.required,
            "made": r.verdict.made_required,
            "allowed": r.verdict.allowed,
            "violations": dict(r.verdict.violations),
            "duplicates": r.verdict.duplicates,
            "lost": len(r.verdict.lost),
            "deferred": r.verdict.deferred,
            "p50_ratio": pct(r.verdict.ratios, 0.5),
            "p99_ratio": pct(r.verdict.ratios, 0.99),
            "p99_bound_ratio": pct(r.verdict.bound_ratios, 0.99),
            "p99_limits_only_ratio": pct(r.verdict.limits_only_ratios, 0.99),
            "bound_users": len(r.verdict.bound_ratios),
            "floor_s": r.verdict.floor,
            "pace_s": r.verdict.pace,
            "redundant_calls": r.verdict.redundant_calls,
            "redundant_by_user": dict(r.verdict.redundant_by_user.most_common(30)),
            "reverse_p50_s": pct(r.verdict.reverse_latency, 0.5),
            "reverse_p99_s": pct(r.verdict.reverse_latency, 0.99),
            "throughput": r.throughput,
            "lost_first": r.verdict.lost[:50],
            "after_erase_first": r.verdict.erased_first,
            "slowest": r.verdict.slowest,
            "bound": r.verdict.bound,
            "bound_requests_per_follow": r.verdict.bound_requests,
            "bound_stages": r.verdict.bound_stages,
            "unfinished": r.verdict.unfinished,
            "objects_left": r.verdict.objects_left_names,
            "dlq": r.verdict.dlq[:50],
            "chaos": r.timeline.chaos,
            # Mastodon's daily windows are fixed on the epoch: where one ends in the day (wall
            # t0 modulo the compressed day) changes who meets it at the peak
            "t0": r.timeline.t0,
            "driver_lateness": lateness(r.timeline),
            "failures": r.timeline.failures,
            "peak_rss_mb": r.peak_rss_mb,
            "cpu_s": r.cpu_s,
            "cpu_capacity_s": r.cpu_capacity_s,
            "calibration_s": r.calibration_s,
        }
        for r in results
    ]
