#!/bin/sh
# hwlab telemetry sampler: power, energy counters, temperatures and clocks, one line per sample.
#
# Why plain POSIX sh: it travels alone to phones (mksh + toybox), boards (busybox ash) and servers
# (dash/bash) that may have no Python. Each sample uses only shell builtins (`read` from sysfs) so a
# 20 Hz loop costs one `sleep` fork per sample, not one process per file.
#
# Usage: sh sampler.sh -o FILE [-r HZ] [-d SECONDS] [-n COUNT] [-s STOPFILE] [-R ROOT]
#                      [-c uptime|date] [-M MAXSECONDS]
#   -r HZ        target rate (default 20); real timestamps are recorded on every line
#   -o FILE      output file (default: stdout)
#   -d SECONDS   stop after this long; otherwise run until STOPFILE exists or a TERM/INT/HUP
#   -n COUNT     stop after COUNT samples
#   -s STOPFILE  stop when this file exists
#   -R ROOT      prefix for /sys and /proc (tests point it at fake trees); default ""
#   -c CLOCK     uptime (default: /proc/uptime, CLOCK_BOOTTIME, 10 ms) or date (date +%s.%N)
#   -M SECONDS   hard upper bound so an orphaned sampler cannot run forever (default 7200)
#
# Output (documented in docs/telemetry.md): header lines start with '#':
#   # hwlab-sampler 1 | # clock NAME | # rate_hz R | # period_s P | # root ROOT
#   # col NAME UNIT PATH          one per value column, in the order of the data fields
#   # info KEY VALUE...           static facts (max freqs, RAPL wrap range, zone types, trips)
#   # unavailable WHAT REASON...  a source that exists but cannot be read, and why
#   # wall_ref UPTIME EPOCH       the sampler clock next to the wall clock (start and end)
#   # fields t NAME...
# then one data line per sample: "<t> <v1> <v2> ..." where '-' means the read failed,
# and at the end "# end <t> <reason> <samples>".

RATE=20
OUT=""
DURATION=""
COUNT=""
STOPFILE=""
ROOT=""
CLOCK=""
MAXSEC=7200

usage() {
    echo "usage: sampler.sh -o FILE [-r HZ] [-d SECONDS] [-n COUNT] [-s STOPFILE] [-R ROOT] [-c uptime|date] [-M MAXSECONDS]" >&2
    exit 2
}

while getopts "r:o:d:n:s:R:c:M:h" opt; do
    case $opt in
        r) RATE=$OPTARG ;;
        o) OUT=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        n) COUNT=$OPTARG ;;
        s) STOPFILE=$OPTARG ;;
        R) ROOT=$OPTARG ;;
        c) CLOCK=$OPTARG ;;
        M) MAXSEC=$OPTARG ;;
        *) usage ;;
    esac
done

NL='
'

# --- small helpers (builtins only) -------------------------------------------------------------

# rd FILE: first line of FILE into $v, or "-" when it cannot be read.
rd() {
    v=""
    if { IFS= read -r v < "$1" || [ -n "$v" ]; } 2>/dev/null; then
        [ -n "$v" ] || v="-"
        case $v in *' '*|*'	'*) squash ;; esac
        return 0
    fi
    v="-"
    return 1
}

# squash: turn blanks in $v into '_' so every data field is one word.
squash() {
    while :; do
        case $v in
            *' '*) v="${v%% *}_${v#* }" ;;
            *'	'*) v="${v%%	*}_${v#*	}" ;;
            *) break ;;
        esac
    done
}

# to_cs TEXT: seconds "123.45" (or "123") -> centiseconds in $cs, integer arithmetic only.
to_cs() {
    _i=${1%%.*}
    case $1 in
        *.*) _f=${1#*.}00 ;;
        *) _f=00 ;;
    esac
    _rest2=${_f#??}
    _f=${_f%"$_rest2"}
    while :; do case $_i in 0?*) _i=${_i#0} ;; *) break ;; esac; done
    while :; do case $_f in 0?*) _f=${_f#0} ;; *) break ;; esac; done
    [ -n "$_i" ] || _i=0
    cs=$((_i * 100 + _f))
}

# now: current time of the chosen clock into $t.
now() {
    if [ "$CLOCK" = uptime ]; then
        t=""
        read -r t _rest < "$ROOT/proc/uptime" || t="-"
    else
        t=$(date +%s.%N)
    fi
}

COLS=""      # newline-separated paths, in field order
FIELDS="t"
HEADER=""

hdr() { HEADER="$HEADER# $*$NL"; }

# addcol NAME UNIT PATH: a value column, only when PATH is readable now.
addcol() {
    if rd "$3"; then
        COLS="$COLS$3$NL"
        FIELDS="$FIELDS $1"
        hdr "col $1 $2 $3"
    else
        hdr "unavailable $1 cannot read $3"
    fi
}

# info KEY FILE: a static fact, when readable.
info() {
    if rd "$2"; then hdr "info $1 $v"; fi
}

# --- clock ---------------------------------------------------------------------------------------

if [ -z "$CLOCK" ]; then
    if { read -r _u _rest < "$ROOT/proc/uptime"; } 2>/dev/null; then CLOCK="uptime"; else CLOCK="date"; fi
fi
case $CLOCK in
    uptime|date) ;;
    *) echo "sampler.sh: -c must be uptime or date" >&2; exit 2 ;;
esac
if [ "$CLOCK" = date ]; then
    case $(date +%s.%N) in
        *N*|*%*) echo "sampler.sh: date +%s.%N unsupported here; use -c uptime" >&2; exit 2 ;;
    esac
fi

# wall reference: the sampler clock next to epoch seconds (sub-second when date knows %N)
wall_ref() {
    if [ "$CLOCK" = uptime ]; then
        read -r _u _rest < "$ROOT/proc/uptime" || _u="-"
    else
        _u=""
    fi
    _e=$(date +%s.%N 2>/dev/null)
    case $_e in *N*|*%*|'') _e=$(date +%s 2>/dev/null) ;; esac
    [ -n "$_u" ] || _u=$_e
    echo "# wall_ref $_u ${_e:--}"
}

# --- period --------------------------------------------------------------------------------------

case $RATE in
    ''|*[!0-9.]*|*.*.*|.) echo "sampler.sh: -r must be a positive number" >&2; exit 2 ;;
esac
to_cs "$RATE"
RATE_CS=$cs          # rate x 100
[ "$RATE_CS" -gt 0 ] || { echo "sampler.sh: -r must be > 0" >&2; exit 2; }
PERIOD_US=$((100000000 / RATE_CS))
PERIOD=$((PERIOD_US / 1000000)).$(printf '%06d' $((PERIOD_US % 1000000)))
SLEEP_NOTE=""
if ! sleep 0.001 2>/dev/null; then
    # no fractional sleep (very old busybox): 1 Hz is the best this device can do
    PERIOD=1
    SLEEP_NOTE="sleep lacks fractional seconds; rate limited to 1 Hz"
fi

# --- detection -----------------------------------------------------------------------------------

R=$ROOT
hdr "hwlab-sampler 1"
hdr "clock $CLOCK"
hdr "rate_hz $RATE"
hdr "period_s $PERIOD"
[ -z "$SLEEP_NOTE" ] || hdr "note $SLEEP_NOTE"
hdr "root ${ROOT:-/}"

# battery (kernel ABI: uA/uV; Huawei 'Battery' node reports mA, sign varies: telemetry.py decides)
for b in battery Battery BAT0 BAT1; do
    d="$R/sys/class/power_supply/$b"
    [ -d "$d" ] || continue
    hdr "info bat.node $b"
    [ -e "$d/current_now" ] && addcol bat.current raw "$d/current_now"
    [ -e "$d/voltage_now" ] && addcol bat.voltage uV "$d/voltage_now"
    [ -e "$d/power_now" ] && addcol bat.power uW "$d/power_now"
    [ -e "$d/status" ] && addcol bat.status text "$d/status"
    break
done

# hwmon INA2xx (power uW, current mA, bus voltage mV)
for h in "$R"/sys/class/hwmon/hwmon*; do
    [ -e "$h/name" ] || continue
    rd "$h/name" || continue
    case $v in ina219|ina226|ina230|ina231|ina260) ;; *) continue ;; esac
    chip=$v
    hn=${h##*/}
    hdr "info ina.$hn.chip $chip"
    info "ina.$hn.update_interval_ms" "$h/update_interval"
    info "ina.$hn.shunt_resistor_uohm" "$h/shunt_resistor"
    for f in "$h"/power*_input; do
        [ -e "$f" ] || continue
        n=${f##*/}; addcol "ina.$hn.${n%_input}" uW "$f"
    done
    for f in "$h"/curr*_input; do
        [ -e "$f" ] || continue
        n=${f##*/}; addcol "ina.$hn.${n%_input}" mA "$f"
    done
    for f in "$h"/in*_input; do
        [ -e "$f" ] || continue
        n=${f##*/}; addcol "ina.$hn.${n%_input}" mV "$f"
    done
done

# RAPL energy counters (uJ, wrap at max_energy_range_uj; root-only since kernel 5.10)
for z in "$R"/sys/class/powercap/intel-rapl:*; do
    [ -e "$z/energy_uj" ] || continue
    zn=${z##*/}
    info "rapl.$zn.name" "$z/name"
    info "rapl.$zn.max_energy_range_uj" "$z/max_energy_range_uj"
    if rd "$z/energy_uj"; then
        addcol "rapl.$zn" uJ "$z/energy_uj"
    else
        hdr "unavailable rapl.$zn energy_uj not readable (root-only since kernel 5.10, CVE-2020-8694)"
    fi
done

# thermal zones (millidegree C) and their trip points
for z in "$R"/sys/class/thermal/thermal_zone*; do
    [ -e "$z/temp" ] || continue
    zn=${z##*/}
    info "temp.$zn.type" "$z/type"
    for tp in "$z"/trip_point_*_temp; do
        [ -e "$tp" ] || continue
        tn=${tp##*/}; tn=${tn%_temp}
        if rd "$z/${tn}_type"; then ttype=$v; else ttype=unknown; fi
        if rd "$tp"; then hdr "info temp.$zn.$tn $v $ttype"; fi
    done
    addcol "temp.$zn" mC "$z/temp"
done

# CPU frequency per cluster (kHz): policy dirs, or per-cpu dirs on old kernels
found_policy=""
for p in "$R"/sys/devices/system/cpu/cpufreq/policy*; do
    [ -e "$p/scaling_cur_freq" ] || continue
    found_policy=1
    pn=${p##*/}
    info "cpu.$pn.related_cpus" "$p/related_cpus"
    info "cpu.$pn.cpuinfo_max_freq" "$p/cpuinfo_max_freq"
    info "cpu.$pn.scaling_max_freq" "$p/scaling_max_freq"
    info "cpu.$pn.governor" "$p/scaling_governor"
    addcol "cpu.$pn" kHz "$p/scaling_cur_freq"
done
if [ -z "$found_policy" ]; then
    for p in "$R"/sys/devices/system/cpu/cpu[0-9]*/cpufreq; do
        [ -e "$p/scaling_cur_freq" ] || continue
        c=${p%/cpufreq}; c=${c##*/}
        info "cpu.$c.related_cpus" "$p/related_cpus"
        info "cpu.$c.cpuinfo_max_freq" "$p/cpuinfo_max_freq"
        info "cpu.$c.scaling_max_freq" "$p/scaling_max_freq"
        info "cpu.$c.governor" "$p/scaling_governor"
        addcol "cpu.$c" kHz "$p/scaling_cur_freq"
    done
fi

# NPU devfreq (Hz): Rockchip ffbc0000.npu (RK1808/RV1109/RV1126), fde40000.npu (RK356x),
# fdab0000.npu (RK3588), ff300000.npu (RK3562), 27700000.npu (RK3576), ...
for n in "$R"/sys/class/devfreq/*npu*; do
    [ -e "$n/cur_freq" ] || continue
    nn=${n##*/}
    info "npu.$nn.max_freq" "$n/max_freq"
    info "npu.$nn.governor" "$n/governor"
    addcol "npu.$nn" Hz "$n/cur_freq"
done

case $FIELDS in
    *' bat.'*|*' ina.'*|*' rapl.'*) ;;
    *)
        if [ -d "$R/sys/class/powercap" ]; then pc="present but no readable intel-rapl zone"
        else pc="absent"; fi
        hdr "unavailable power no battery node, no INA2xx hwmon, no readable RAPL zone under ${ROOT:-/}sys (/sys/class/powercap $pc)"
        ;;
esac
hdr "fields $FIELDS"

# --- sampling loop -------------------------------------------------------------------------------

if [ -n "$OUT" ]; then
    exec 3>"$OUT" || exit 2
else
    exec 3>&1
fi
printf '%s' "$HEADER" >&3
wall_ref >&3

STOP=""
trap 'STOP=signal' TERM INT HUP

START_CS=""
if { read -r _u _rest < "$ROOT/proc/uptime"; } 2>/dev/null; then to_cs "$_u"; START_CS=$cs; fi
DUR_CS=""
[ -z "$DURATION" ] || { to_cs "$DURATION"; DUR_CS=$cs; }
to_cs "$MAXSEC"; MAX_CS=$cs

N=0
REASON=""
set -f
while :; do
    now
    line=$t
    IFS=$NL
    for f in $COLS; do
        rd "$f"
        line="$line $v"
    done
    unset IFS
    echo "$line" >&3
    N=$((N + 1))

    if [ -n "$STOP" ]; then REASON=$STOP; break; fi
    if [ -n "$COUNT" ] && [ "$N" -ge "$COUNT" ]; then REASON=count; break; fi
    if [ -n "$STOPFILE" ] && [ -e "$STOPFILE" ]; then REASON=stopfile; break; fi
    if [ -n "$START_CS" ]; then
        if [ "$CLOCK" = uptime ]; then _u=$t; else read -r _u _rest < "$ROOT/proc/uptime"; fi
        to_cs "$_u"
        el=$((cs - START_CS))
        if [ -n "$DUR_CS" ] && [ "$el" -ge "$DUR_CS" ]; then REASON=duration; break; fi
        if [ "$el" -ge "$MAX_CS" ]; then REASON=max_seconds; break; fi
    elif [ -n "$DUR_CS" ] && [ $((N * 100 * 100)) -ge $((DUR_CS * RATE_CS)) ]; then
        REASON=duration; break
    fi
    sleep "$PERIOD"
    if [ -n "$STOP" ]; then REASON=$STOP; break; fi
done
set +f

wall_ref >&3
now
echo "# end $t $REASON $N" >&3
exec 3>&-
exit 0
