"""lab.telemetry (trace, power, energy, thermal, figures, cooldown) and lab.core.isotime on scripted
traces: every expected figure is worked out by hand in the comments."""
from __future__ import annotations

import math

import pytest

from lab.core.isotime import iso_epoch
from lab.telemetry.cooldown import cooldown_step, hottest_c, parse_thermal_zones, wait_for_cooldown
from lab.telemetry.energy import energy_between
from lab.telemetry.figures import POWER_FIELDS, Window, analyze, power_fields
from lab.telemetry.power import battery_series, detect_current_unit, rapl_series
from lab.telemetry.trace import Trace, parse_trace
from lab.core.records import Measurement

HEAD = "# hwlab-sampler 1\n# clock uptime\n# rate_hz 20\n# period_s 0.05\n"


def trace(cols: list[tuple[str, str]], rows: list[tuple], info: dict | None = None,
          extra: str = "") -> Trace:
    text = HEAD + "".join(f"# col {n} {u} /sys/fake/{n}\n" for n, u in cols)
    text += "".join(f"# info {k} {v}\n" for k, v in (info or {}).items()) + extra
    text += "# fields t " + " ".join(n for n, _ in cols) + "\n"
    text += "".join(" ".join(str(x) for x in r) + "\n" for r in rows)
    return parse_trace(text)


# Battery, irregular sample times. V = 4.0 V; P = 4 V x |I|.
# idle 1 W at t=0, 3, 7.5; job t=10: 2 W, t=11: 3 W, t=12.5: 2 W, t=14: 2 W
# job energy [10,14] = (2+3)/2*1 + (3+2)/2*1.5 + 2*1.5 = 2.5 + 3.75 + 3.0 = 9.25 J
# gross = 9.25 J / 100 inf = 92.5 mJ; idle [0,7.5] = 1 W; net = (9.25 - 1*4)/100 = 52.5 mJ
TIMES = [0, 3, 7.5, 10, 11, 12.5, 14]
WATTS = [1, 1, 1, 2, 3, 2, 2]
WIN = [Window(10, 14, 100)]


def battery_rows(scale, sign, status="Discharging"):
    return [(t, int(sign * w / 4 * scale), 4000000, status) for t, w in zip(TIMES, WATTS)]


@pytest.mark.parametrize("node,scale,sign,unit,conv", [
    ("battery", 1e6, -1, "µA", "negative = discharging"),   # kernel ABI
    ("battery", 1e6, +1, "µA", "positive = discharging"),   # old positive-discharge drivers
    ("Battery", 1e3, +1, "mA", "positive = discharging"),   # Huawei: mA, sign inverted
    ("Battery", 1e3, -1, "mA", "negative = discharging"),
])
def test_battery_units_and_signs_hand_computed(node, scale, sign, unit, conv):
    tr = trace([("bat.current", "raw"), ("bat.voltage", "uV"), ("bat.status", "text")],
               battery_rows(scale, sign), {"bat.node": node})
    r = analyze(tr, WIN, idle=(0, 7.5))
    assert r.power_w == pytest.approx(9.25 / 4)
    assert r.energy_mj_per_inf == pytest.approx(92.5)
    assert r.idle_w == pytest.approx(1.0)
    assert r.energy_net_mj_per_inf == pytest.approx(52.5)
    assert r.power_source.startswith(f"battery:{node}")
    assert f"current unit {unit}" in r.power_note and conv in r.power_note


def test_battery_charging_is_unavailable_not_zero():
    tr = trace([("bat.current", "raw"), ("bat.voltage", "uV"), ("bat.status", "text")],
               battery_rows(1e6, +1, "Charging"), {"bat.node": "battery"})
    f = analyze(tr, WIN, idle=(0, 7.5)).fields()
    assert f["power_w"] is None and f["energy_mj_per_inf"] is None
    assert "charging" in f["power_note"]


def power_now_rows(sign, status="Discharging"):
    # same hand-computed watts as battery_rows, as power_now in µW
    return [(t, int(sign * w * 1e6), status) for t, w in zip(TIMES, WATTS)]


@pytest.mark.parametrize("sign,conv", [(-1, "negative = discharging"), (+1, "positive = discharging")])
def test_battery_power_now_sign_hand_computed(sign, conv):
    tr = trace([("bat.power", "uW"), ("bat.status", "text")], power_now_rows(sign),
               {"bat.node": "battery"})
    r = analyze(tr, WIN, idle=(0, 7.5))
    assert r.power_w == pytest.approx(9.25 / 4) and r.energy_mj_per_inf == pytest.approx(92.5)
    assert r.energy_net_mj_per_inf == pytest.approx(52.5)
    assert "power_now in µW" in r.power_note and conv in r.power_note


def test_battery_power_now_while_charging_is_unavailable_not_device_power():
    tr = trace([("bat.power", "uW"), ("bat.status", "text")], power_now_rows(+1, "Charging"),
               {"bat.node": "battery"})
    f = analyze(tr, WIN, idle=(0, 7.5)).fields()
    assert f["power_w"] is None and f["energy_mj_per_inf"] is None
    assert "is charging" in f["power_note"]


@pytest.mark.parametrize("status", ["Not charging", "Full"])
def test_battery_power_now_not_charging_or_full_is_noted(status):
    tr = trace([("bat.power", "uW"), ("bat.status", "text")],
               [(t, -int(w * 1e6), status.replace(" ", "_")) for t, w in zip(TIMES, WATTS)],
               {"bat.node": "battery"})
    # the trace format splits on spaces: sampler.sh writes "Not_charging"
    r = analyze(tr, WIN, idle=(0, 7.5))
    assert r.power_w == pytest.approx(9.25 / 4)
    assert "charger may carry part of the load" in r.power_note


def test_battery_power_now_minority_reverse_flow_kept_negative():
    rows = power_now_rows(-1)
    rows[4] = (rows[4][0], 500000, "Discharging")  # 0.5 W into the battery at t=11
    tr = trace([("bat.power", "uW"), ("bat.status", "text")], rows, {"bat.node": "battery"})
    s = battery_series(tr)
    assert s.power_w[4] == pytest.approx(-0.5) and s.power_w[3] == pytest.approx(2.0)
    assert any("flowed into the battery" in n for n in s.notes)


def test_unit_detection_rule():
    assert detect_current_unit(3000, 4.0)[0] == 1e-3   # 3 A phone in mA: 12 W, not 0.012 W
    assert detect_current_unit(300000, 4.0)[0] == 1e-6
    assert detect_current_unit(350, 3.85)[0] == 1e-3


# RAPL package counter with max_energy_range_uj = 1e9 µJ (1000 J); values in µJ:
# t=0 980e6, t=2 990e6 (+10 J, idle 5 W), t=4 10e6 (wrap: 10e6+1e9-990e6 = 20e6 -> +20 J, 10 W),
# t=5 20e6 (+10 J), t=7 40e6 (+20 J). Window [2,7]: 20+10+20 = 50 J over 5 s = 10 W,
# 50 iterations -> 1000 mJ/inf; idle [0,2] 5 W -> net (50 - 25)/50 = 500 mJ/inf.
RAPL_ROWS = [(0, 980000000), (2, 990000000), (4, 10000000), (5, 20000000), (7, 40000000)]
RAPL_INFO = {"rapl.intel-rapl:0.name": "package-0",
             "rapl.intel-rapl:0.max_energy_range_uj": "1000000000"}


def test_rapl_wraparound_hand_computed():
    tr = trace([("rapl.intel-rapl:0", "uJ")], RAPL_ROWS, RAPL_INFO)
    r = analyze(tr, [Window(2, 7, 50)], idle=(0, 2), idle_s_wanted=2)
    assert r.power_w == pytest.approx(10.0)
    assert r.energy_mj_per_inf == pytest.approx(1000.0)
    assert r.idle_w == pytest.approx(5.0)
    assert r.energy_net_mj_per_inf == pytest.approx(500.0)
    assert "counter" in r.power_source and "wraparound" in r.power_note


def test_counter_interpolates_window_edges():
    # cumulative J: t=2 10, t=4 30 -> t=3 20; t=5 40, t=7 60 -> t=6 50; [3,6] = 30 J
    tr = trace([("rapl.intel-rapl:0", "uJ")], RAPL_ROWS, RAPL_INFO)
    s = rapl_series(tr)
    assert energy_between(s, 3, 6) == pytest.approx(30.0)
    assert energy_between(s, 3, 8) is None  # beyond the last sample: not covered


def test_rapl_without_range_does_not_invent_a_wrap():
    tr = trace([("rapl.intel-rapl:0", "uJ")], RAPL_ROWS, {"rapl.intel-rapl:0.name": "package-0"})
    r = analyze(tr, [Window(2, 7, 50)], idle=(0, 2), idle_s_wanted=2)
    assert r.power_w == pytest.approx(30 / 5)  # the backwards step is skipped, and said so
    assert "went backwards" in r.power_note


def test_rapl_subzones_are_not_double_counted():
    rows = [(t, e, 5) for t, e in RAPL_ROWS]
    tr = trace([("rapl.intel-rapl:0", "uJ"), ("rapl.intel-rapl:0:0", "uJ")], rows, RAPL_INFO)
    assert analyze(tr, [Window(2, 7, 50)]).power_w == pytest.approx(10.0)


def test_two_packages_are_summed():
    rows = [(0, 0, 0), (1, 5e6, 3e6), (2, 10e6, 6e6)]  # 5 W + 3 W
    info = {"rapl.intel-rapl:0.max_energy_range_uj": "1e12",
            "rapl.intel-rapl:1.max_energy_range_uj": "1e12"}
    tr = trace([("rapl.intel-rapl:0", "uJ"), ("rapl.intel-rapl:1", "uJ")], rows, info)
    assert analyze(tr, [Window(0, 2, 10)]).power_w == pytest.approx(8.0)


def test_ina226_power_and_short_window_flag():
    # 2.5 W flat, update_interval 2 ms; window 0.02 s < 10 x 0.002 s? no: equal -> not short.
    rows = [(0.00, 2500000), (0.01, 2500000), (0.03, 2500000), (1.0, 2500000)]
    tr = trace([("ina.hwmon0.power1", "uW")], rows,
               {"ina.hwmon0.chip": "ina226", "ina.hwmon0.update_interval_ms": "2"})
    r = analyze(tr, [Window(0.0, 1.0, 4)])
    assert r.power_w == pytest.approx(2.5) and r.energy_mj_per_inf == pytest.approx(625.0)
    assert r.power_source.startswith("ina226:hwmon0")
    assert "shorter than 10 sensor periods" not in r.power_note
    r = analyze(trace([("ina.hwmon0.power1", "uW")], rows,
                        {"ina.hwmon0.chip": "ina226", "ina.hwmon0.update_interval_ms": "100"}),
                  [Window(0.0, 0.5, 4)])
    assert "shorter than 10 sensor periods" in r.power_note
    assert r.idle_w is None and r.energy_net_mj_per_inf is None
    assert "no idle baseline" in r.power_note


def test_ina_current_times_voltage():
    rows = [(0, 500, 5000), (2, 700, 5000)]  # 2.5 W -> 3.5 W: trapezoid 6 J over 2 s = 3 W
    tr = trace([("ina.hwmon0.curr1", "mA"), ("ina.hwmon0.in1", "mV")], rows)
    assert analyze(tr, [Window(0, 2, 1)]).power_w == pytest.approx(3.0)


def test_uncertainty_model_is_stated_and_grows_for_short_windows():
    tr = trace([("rapl.intel-rapl:0", "uJ")], RAPL_ROWS, RAPL_INFO)
    r = analyze(tr, [Window(2, 7, 50)])
    # counter: sampling term 0; edge = 2 x period / 5 s; sensor 5 %
    assert r.uncertainty_rel == pytest.approx(math.sqrt(0.05 ** 2 + (2 * r.sensor_period_s / 5) ** 2))
    assert "quadrature" in r.uncertainty_model


def test_nvml_counter_reasons_memory_and_temps():
    # energy mJ: +2000 mJ per 0.1 s = 20 W; reasons 0x1 idle then 0x4 SwPowerCap under load
    rows = []
    for i in range(21):
        t = round(100 + 0.1 * i, 3)
        rows.append((t, 1000000 + 2000 * i, 20000, 500 + (1500 if i >= 5 else 0),
                     1200 if i >= 5 else 0, 40 + i * 0.5, 0x4 if i >= 5 else 0x1, 1410))
    cols = [("nvml.gpu0.energy", "mJ"), ("nvml.gpu0.power", "mW"), ("nvml.gpu0.mem_used", "MB"),
            ("nvml.gpu0.proc_mem", "MB"), ("nvml.gpu0.temp", "C"), ("nvml.gpu0.reasons", "mask"),
            ("nvml.gpu0.sm_clock", "MHz")]
    tr = trace(cols, rows)
    r = analyze(tr, [Window(100.5, 102.0, 30)], idle=(100.0, 100.4), idle_s_wanted=0.4)
    assert r.power_w == pytest.approx(20.0)
    assert r.energy_mj_per_inf == pytest.approx(20.0 * 1.5 * 1000 / 30)
    assert r.throttled is True and "SwPowerCap" in r.throttle_reasons[0]
    assert r.gpu_mem_mb == 1200
    assert r.temp_start_c == pytest.approx(42.0) and r.temp_max_c == pytest.approx(50.0)


def test_nvml_memory_delta_fallback_when_pids_do_not_match():
    rows = [(0, 500, 0), (1, 500, 0), (2, 2100, 0), (3, 2000, 0)]
    tr = trace([("nvml.gpu0.mem_used", "MB"), ("nvml.gpu0.proc_mem", "MB")], rows)
    r = analyze(tr, [Window(2, 3, 10)], idle=(0, 1), gpu_pids_note="pid 7 not in list")
    assert r.gpu_mem_mb == 1600 and "device memory delta" in r.power_note


def test_thermal_trip_and_frequency_throttle():
    info = {"temp.thermal_zone0.type": "soc_thermal",
            "temp.thermal_zone0.trip_point_0": "85000 passive",
            "cpu.policy4.cpuinfo_max_freq": "2600000", "cpu.policy0.cpuinfo_max_freq": "1844000"}
    rows = [(0, 41000, 2600000, 600000), (1, 60000, 2600000, 600000),
            (2, 86000, 1800000, 600000), (3, 84000, 1700000, 600000),
            (4, 80000, 1700000, 600000), (5, 79000, 1700000, 600000)]
    tr = trace([("temp.thermal_zone0", "mC"), ("cpu.policy4", "kHz"), ("cpu.policy0", "kHz")],
               rows, info)
    r = analyze(tr, [Window(0.5, 5, 10)])
    assert r.throttled is True
    text = " ".join(r.throttle_reasons)
    assert "trip_point_0" in text and "cpu.policy4" in text
    assert "cpu.policy0" not in text  # idle little cluster never reached max: not throttling
    assert r.temp_max_c == 86.0


def test_not_throttled_is_false_only_when_something_was_watched():
    info = {"cpu.policy0.cpuinfo_max_freq": "1600000"}
    tr = trace([("cpu.policy0", "kHz")], [(0, 1600000), (1, 1600000), (2, 1600000)], info)
    assert analyze(tr, [Window(0, 2, 1)]).throttled is False
    assert analyze(trace([], [(0,), (1,)]), [Window(0, 1, 1)]).throttled is None


def test_power_fields_are_exactly_measurement_fields_and_none_with_reason():
    f = power_fields(None, unavailable="power unavailable: no sampler on this device")
    assert set(f) == set(POWER_FIELDS)
    assert set(f) <= set(Measurement.__dataclass_fields__)
    assert all(f[k] is None for k in f if k != "power_note")
    assert f["power_note"].startswith("power unavailable")
    tr = trace([("temp.thermal_zone0", "mC")], [(0, 40000), (1, 41000)])
    f = analyze(tr, [Window(0, 1, 5)]).fields()
    assert f["power_w"] is None and f["energy_mj_per_inf"] is None and f["power_w"] != 0
    assert f["power_note"].startswith("power unavailable")
    assert f["temp_max_c"] == 41.0


def test_parser_skips_malformed_lines_and_keeps_unreadable_as_none():
    text = HEAD + "# col a uW p\n# fields t a\n0 1\n1 -\nGARBAGE\n2 3 4\n0.5 9\n"
    tr = parse_trace(text)
    assert tr.t == [0, 1] and tr.values["a"] == [1.0, None]
    assert "2 malformed" in tr.notes[0] or "3 malformed" in tr.notes[0]


class FakeClock:
    """Time that moves only when the code under test sleeps (the decisions are pure)."""

    def __init__(self, interrupt_at: float | None = None):
        self.now, self.sleeps, self.interrupt_at = 0.0, [], interrupt_at

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s
        return self.interrupt_at is not None and self.now >= self.interrupt_at

    def clock(self):
        return self.now


def test_cooldown_step_decisions():
    assert cooldown_step(46.0, 46.0, 0.0, 10.0) == "cooled"  # at the target counts
    assert cooldown_step(46.1, 46.0, 9.9, 10.0) == "wait"
    assert cooldown_step(46.1, 46.0, 10.0, 10.0) == "bound"
    assert cooldown_step(30.0, 46.0, 99.0, 10.0) == "cooled"  # cooled wins over the bound


def test_cooldown_returns_when_cool_and_records_what_was_waited():
    c = FakeClock()
    temps = iter([60.0, 55.0, 50.0, 45.5, 44.0])
    r = wait_for_cooldown(lambda: next(temps), 44.0, 100, sleep=c.sleep, clock=c.clock,
                            poll_s=5)
    assert (r.outcome, r.waited_s, r.start_c, r.end_c, r.target_c) == ("cooled", 15, 60.0, 45.5, 46.0)
    d = r.as_dict()
    assert d["waited_s"] == 15 and d["baseline_c"] == 44.0 and "60.0 -> 45.5" in d["note"]


def test_cooldown_is_bounded_when_the_device_stays_hot():
    c = FakeClock()
    r = wait_for_cooldown(lambda: 70.0, 44.0, 12, sleep=c.sleep, clock=c.clock, poll_s=5)
    assert r.outcome == "bound" and r.waited_s == 12 and c.sleeps == [5, 5, 2]
    assert "bound of 12 s hit" in r.note() and "70.0 -> 70.0" in r.note()


def test_cooldown_without_sensors_is_the_fixed_sleep_with_the_reason():
    c = FakeClock()
    r = wait_for_cooldown(lambda: None, 44.0, 30, sleep=c.sleep, clock=c.clock)
    assert r.outcome == "fixed" and r.waited_s == 30 and c.sleeps == [30]
    assert r.note() == "cooldown: no thermal zone readable now: fixed sleep of 30.0 s"
    c = FakeClock()
    r = wait_for_cooldown(lambda: 50.0, None, 30, sleep=c.sleep, clock=c.clock)
    assert r.outcome == "fixed" and r.waited_s == 30 and "before the device's first job" in r.reason
    # a sensor that goes away mid-wait: the rest of the bound is slept, the readings kept
    c = FakeClock()
    temps = iter([60.0, None])
    r = wait_for_cooldown(lambda: next(temps), 44.0, 30, sleep=c.sleep, clock=c.clock, poll_s=2)
    assert r.outcome == "fixed" and r.waited_s == 30 and r.start_c == 60.0 and c.sleeps == [2, 28]


def test_cooldown_stops_when_interrupted():
    c = FakeClock(interrupt_at=4)
    r = wait_for_cooldown(lambda: 70.0, 44.0, 100, sleep=c.sleep, clock=c.clock, poll_s=2)
    assert r.outcome == "interrupted" and r.waited_s == 4


def test_thermal_zone_lines_parse_to_soc_celsius():
    text = ("thermal_zone0 41000 soc-thermal\nthermal_zone1 38500 battery\n"
            "thermal_zone2 -273150 disabled\nthermal_zone3 55250 cpu big cluster\n"
            "thermal_zone4 oops gpu\nthermal_zone5 47000 charger-therm\n\n")
    zones = parse_thermal_zones(text)
    assert zones == {"thermal_zone0": 41.0, "thermal_zone3": 55.25}
    assert hottest_c(zones) == 55.25 and hottest_c({}) is None


def test_iso_parsing():
    assert iso_epoch("1970-01-01T00:00:01.5Z") == (1.5, True)
    assert iso_epoch("1970-01-01T00:00:01Z") == (1.0, False)
    assert iso_epoch("nope") is None
