"""The pure parts of the corpus replay (bench/replay_corpus.py): nights, the 10% x 3 nights rule, and the
ground truth with the matching of a detection to a real event. No I/O beyond listing file names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path

STAMP = re.compile(r"_(\d{8}-\d{6})\.json$")
TEN_PCT = 0.10
NIGHTS_IN_A_ROW = 3


@dataclass(frozen=True)
class Night:
    folder: str  # e.g. "buildkite_nightly_raw/9358" or "local_nightly_raw/manual_20260615_AM"
    path: Path
    at: datetime  # the earliest file-name timestamp, read as UTC

    @property
    def name(self) -> str:
        return self.folder.rsplit("/", 1)[-1]


def night_time(names: Sequence[str]) -> datetime | None:
    """The earliest YYYYMMDD-HHMMSS file-name suffix (no zone given: UTC), or None if no name has one."""
    stamps = sorted(m.group(1) for n in names if (m := STAMP.search(n)))
    return datetime.strptime(stamps[0], "%Y%m%d-%H%M%S").replace(tzinfo=UTC) if stamps else None


def corpus_nights(corpus: Path) -> list[Night]:
    """Each Buildkite build folder and each local manual_* folder is one night; oldest first."""
    out = []
    for d in sorted([*corpus.glob("buildkite_nightly_raw/*"), *corpus.glob("local_nightly_raw/manual_*")]):
        at = night_time([p.name for p in d.glob("*.json")]) if d.is_dir() else None
        if at is not None:
            out.append(Night(f"{d.parent.name}/{d.name}", d, at))
    return sorted(out, key=lambda n: (n.at, n.folder))


def worse_than(value: float, reference: float, direction: str, margin: float = TEN_PCT) -> bool:
    if direction == "higher_is_better":
        return value < reference * (1 - margin)
    return value > reference * (1 + margin)


def ten_pct_alarms(points: Sequence[tuple[float, float | None]], direction: str) -> list[tuple[int, int]]:
    """Today's hand-rolled rule on one series of (value, the file's own baseline value) per night: an alarm
    when a metric is more than 10% worse than its baseline on 3 nights in a row. Returns (first bad night,
    alarm night) index pairs; one alarm per unbroken streak (a night without a baseline breaks it)."""
    out: list[tuple[int, int]] = []
    streak = 0
    for i, (value, baseline) in enumerate(points):
        bad = baseline is not None and baseline > 0 and worse_than(value, baseline, direction)
        streak = streak + 1 if bad else 0
        if streak == NIGHTS_IN_A_ROW:
            out.append((i - NIGHTS_IN_A_ROW + 1, i))
    return out


# ------------------------------------------------------------------------------------------ ground truth
H200_TP4 = "test_hunyuan_image_tp4/1024x1024_steps8"
H200_SP2 = "test_hunyuan_image_tp2_sp2/1024x1024_steps8"
H200_CFGP2 = "test_hunyuan_image_tp2_cfgp2/1024x1024_steps8"
H200_IT2I = "test_hunyuan_image3_ti2i_inline/inline_dataset_5_requests"
H100_QIE = "test_qwen_image_edit_single_device/1536x1536_steps35_i2i"
H100_QIE_VAE = "test_qwen_image_edit_ulysses2_cfg2_vae_patch4/1536x1536_steps35_i2i"
H100_WAN_480 = "test_wan22_i2v_usp2_vae_patch2_hsdp_slicing/832x480_frames81_steps4"
H100_WAN_720 = "test_wan22_i2v_usp2_vae_patch2_hsdp_slicing/1280x720_frames121_steps4"
STEP = ("eb964dc", "10404e4")  # the last run before the 06-15 step and the first after it


@dataclass(frozen=True)
class Event:
    """A real change in the corpus (or, with quiet=True, a set of series where nothing changed).

    `members` are the (workload, metric family pattern) series that must be flagged for the event to count
    as found (a family: any latency statistic, for instance; the files' baselines hold p99 for some);
    `explains` are metric patterns whose detections on `workloads` it accounts for: a detection carrying
    one of `ranges` (from, to commit prefixes), or raised on one of the `nights` (folder names)."""

    name: str
    hardware: str
    workloads: tuple[str, ...]
    members: tuple[tuple[str, str], ...]
    explains: tuple[str, ...]
    ranges: tuple[tuple[str, str], ...] = (STEP,)
    nights: tuple[str, ...] = ()
    named: bool = True  # named in issue 12; False: a change the data shows that the issue does not name
    quiet: bool = False

    def covers(self, hardware: str, workload: str, metric: str) -> bool:
        return (
            hardware == self.hardware
            and any(fnmatchcase(workload, w) for w in self.workloads)
            and any(fnmatchcase(metric, p) for p in self.explains)
        )

    def explains_detection(
        self,
        hardware: str,
        workload: str,
        metric: str,
        *,
        night: str | None = None,
        commit_range: tuple[str | None, str | None] | None = None,
    ) -> bool:
        if self.quiet or not self.covers(hardware, workload, metric):
            return False
        if night is not None and night in self.nights:
            return True
        return commit_range is not None and any(range_matches(commit_range, r) for r in self.ranges)


def range_matches(given: tuple[str | None, str | None], expected: tuple[str, str]) -> bool:
    lo, hi = given
    return bool(lo and hi and lo.startswith(expected[0]) and hi.startswith(expected[1]))


SPEED = ("latency*", "throughput*", "stage_mean.*")
GROUND_TRUTH: tuple[Event, ...] = (
    Event(
        "HunyuanImage-3 TP4 step (06-15)",
        "H200",
        (H200_TP4,),
        ((H200_TP4, "latency_*"), (H200_TP4, "throughput*")),
        SPEED,
        nights=("manual_20260615_AM",),
    ),
    Event(
        "tp2 steps at eb964dc..10404e4 (6 series)",
        "H200",
        (H200_SP2, H200_CFGP2),
        tuple((w, m) for w in (H200_SP2, H200_CFGP2) for m in ("latency_*", "throughput*", "peak_memory*")),
        (*SPEED, "peak_memory*"),
        nights=("manual_20260615_AM",),
    ),
    Event(
        "it2i return to ~41 s (06-15)",
        "H200",
        (H200_IT2I,),
        ((H200_IT2I, "latency_*"), (H200_IT2I, "throughput*")),
        SPEED,
        # 79 s -> 44.9 s in the 02:21 run, 41.5 s from the 11:04 run on: either boundary is the step
        ranges=(STEP, ("10404e4", "a693ae6")),
        nights=("manual_20260615_AM", "manual_20260615"),
    ),
    Event(
        "06-15/16 peak-memory rise (+11-17%)",
        "H200",
        (H200_TP4, H200_SP2, H200_CFGP2),
        tuple((w, "peak_memory*") for w in (H200_TP4, H200_SP2, H200_CFGP2)),
        ("peak_memory*",),
        nights=("manual_20260615_AM", "manual_20260615", "manual_20260616"),
    ),
    Event("cache-dit series: no change", "H100", ("*cache_dit*",), (), ("*",), ranges=(), quiet=True),
    # Changes the data shows that the issue does not name: detections of them are not false alarms.
    Event(
        "tp2 slow-down 05-30 -> 06-08 (+50%, one run before it)",
        "H200",
        (H200_SP2, H200_CFGP2),
        ((H200_SP2, "latency_*"), (H200_CFGP2, "latency_*")),
        (*SPEED, "peak_memory*"),
        ranges=(("11c4fce", "7dcbeae"),),
        nights=("manual_20260608",),
        named=False,
    ),
    Event(
        "it2i at ~79 s before 06-15 vs the files' 35.6 s baseline (a change before the corpus)",
        "H200",
        (H200_IT2I,),
        (),
        SPEED,
        ranges=(),
        nights=("manual_20260608", "manual_20260609", "manual_20260610", "manual_20260611"),
        named=False,
    ),
    Event(
        "06-16 second speed-up at a693ae6..a624204 (model.forward -1.4% tp2, -5.5% tp4)",
        "H200",
        (H200_TP4, H200_SP2, H200_CFGP2),
        (),
        SPEED,
        ranges=(("a693ae6", "a624204"),),
        nights=("manual_20260616",),
        named=False,
    ),
    # Three H100 changes that the issue does not name: each lasts 4-13 nights, Otava 0.8.0 places it at the same
    # commits on the series' full history, and the memory steps are deterministic (a constant series that moves).
    Event(
        "H100 qwen-image-edit single-device speed-up at 083b5e3..1f1c82e (-2.4%, 13 nights after)",
        "H100",
        ("test_qwen_image_edit_single_device/*",),
        ((H100_QIE, "latency_*"), (H100_QIE, "throughput*")),
        SPEED,
        ranges=(("083b5e3", "1f1c82e"),),
        named=False,
    ),
    Event(
        "H100 qwen-image-edit ulysses2+cfg2+vae_patch4 1536 speed-up at 1f1c82e..e35cd21 (-2%)",
        "H100",
        (H100_QIE_VAE,),
        ((H100_QIE_VAE, "latency_mean"), (H100_QIE_VAE, "throughput*")),
        SPEED,
        ranges=(("1f1c82e", "e35cd21"),),
        named=False,
    ),
    Event(
        "H100 wan22 usp2+vae_patch2+hsdp change at 083b5e3..329c98f (latency +3-5%, peak memory -2-3%)",
        "H100",
        ("test_wan22_i2v_usp2_vae_patch2_hsdp_slicing/*",),
        ((H100_WAN_480, "latency_*"), (H100_WAN_720, "peak_memory*")),
        (*SPEED, "peak_memory*"),
        # the 832x480 p95 moves on e35cd21 already, its mean half on e35cd21 and the rest on 329c98f
        ranges=(("083b5e3", "e35cd21"), ("e35cd21", "329c98f")),
        named=False,
    ),
    Event(
        "06-11 peak-memory step (+1.0% tp2, +3.8% tp4)",
        "H200",
        (H200_TP4, H200_SP2, H200_CFGP2),
        (),
        ("peak_memory*",),
        ranges=(("0342827", "eb964dc"),),
        nights=("manual_20260611",),
        named=False,
    ),
)


def explained_by(
    events: Sequence[Event],
    hardware: str,
    workload: str,
    metric: str,
    *,
    night: str | None = None,
    commit_range: tuple[str | None, str | None] | None = None,
) -> list[Event]:
    return [
        e for e in events if e.explains_detection(hardware, workload, metric, night=night, commit_range=commit_range)
    ]


def short_workload(name: str) -> str:
    """test_hunyuan_image_tp4/1024x1024_steps8 -> hunyuan_image_tp4/1024x1024_steps8 (the table's width)."""
    return name.removeprefix("test_")


def short_range(lo: str | None, hi: str | None) -> str:
    return f"{(lo or '?')[:7]}..{(hi or '?')[:7]}"
