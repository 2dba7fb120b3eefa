"""The CPU calibration kernel between steps (runners.calibration): the step/calibration ratio, and the probe keeping
the calibration's time out of every step, stage and end-to-end figure."""

from __future__ import annotations

import pytest

from runners.calibration import relative
from runners.device import Mark
from runners.engines.diffusers_engine import Probe
from runners.measurements import CATALOGUE, CPU_TIME, DEFAULT_METRICS


class ScriptedDevice:
    """A CPU 'device' on a scripted clock: marks read it, the test moves it (wall and CPU time together)."""

    type = "cpu"

    def __init__(self) -> None:
        self.t = 0.0

    def event(self) -> Mark:
        return Mark(wall=self.t, cpu=self.t)

    def advance(self, ms: float) -> None:
        self.t += ms / 1000.0


def test_a_step_is_divided_by_the_calibrations_either_side_of_it():
    assert relative([20.0, 30.0, 40.0], [10.0, 10.0, 30.0]) == [2.0, 3.0, 2.0]  # first: the one after it only
    assert relative([20.0], [10.0, 10.0]) == [] and relative([], []) == []  # a mismatch gives no ratio, not a guess


def test_a_machine_running_at_half_speed_leaves_the_ratio_unchanged():
    fast = relative([20.0, 20.0, 20.0], [5.0, 5.0, 5.0])
    slow = relative([40.0, 40.0, 40.0], [10.0, 10.0, 10.0])
    assert fast == slow == [4.0, 4.0, 4.0]
    assert relative([30.0, 30.0, 30.0], [5.0, 5.0, 5.0]) == [6.0, 6.0, 6.0]  # the code got slower: the ratio shows it


def test_the_probe_keeps_calibration_time_out_of_the_steps_and_says_how_much_it_took():
    dev = ScriptedDevice()
    probe = Probe(dev)  # type: ignore[arg-type]  (a scripted stand-in for runners.device.Device)

    def calibrate() -> float:
        dev.advance(7.0)
        return 7.0

    probe.calibrate = calibrate
    probe.transformer_pre(None, (), {})  # the loop starts at the first forward
    for step_ms in (20.0, 25.0, 30.0):
        dev.advance(step_ms)
        probe.step_end(None, 0, None, {})
    assert probe.step_ms() == pytest.approx([20.0, 25.0, 30.0])
    assert probe.step_cpu_ms() == pytest.approx([20.0, 25.0, 30.0])
    assert probe.cal_ms == [7.0, 7.0, 7.0]
    assert probe.gap_ms() == pytest.approx((21.0, 21.0))
    assert probe.gap_ms(2) == pytest.approx((14.0, 14.0))  # the ones before the last step's end (denoise loop)
    probe.reset()
    assert probe.gaps == [] and probe.cal_ms == [] and probe.calibrate is calibrate  # kept for the next generation


def test_without_calibration_steps_run_end_to_end_as_before():
    dev = ScriptedDevice()
    probe = Probe(dev)  # type: ignore[arg-type]
    probe.transformer_pre(None, (), {})
    for step_ms in (10.0, 12.0):
        dev.advance(step_ms)
        probe.step_end(None, 0, None, {})
    assert probe.step_ms() == pytest.approx([10.0, 12.0]) and probe.gap_ms() == (0.0, 0.0)


def test_the_ratio_is_catalogued_with_the_cpu_time_metrics():
    assert CATALOGUE["denoise_step_relative"].unit == "ratio"
    assert CATALOGUE["denoise_step_relative"].direction == "lower_is_better"
    assert "denoise_step_relative" in CPU_TIME and "denoise_step_relative" not in DEFAULT_METRICS


def test_the_kernel_is_deterministic_work_timed_on_the_process_clock():
    pytest.importorskip("torch")
    from runners.calibration import Calibration

    a, b = Calibration(n=32, rounds=3), Calibration(n=32, rounds=3)
    assert a._x.equal(b._x) and a._w.equal(b._w)  # seeded: every process times the same work
    assert a() >= 0.0
    assert "matmul" in a.describe()["kernel"]
