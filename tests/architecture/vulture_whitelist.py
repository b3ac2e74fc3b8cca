"""Names vulture reports as unused in lab/ that must stay, each with the reason (test_dead_code.py).

One `_.name  # why` per line. vulture matches by name, so an entry keeps every attribute or function
of that name: write the reason for the use that needs it. What only the tests use is not a reason.
"""
from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# -- set on, or called by, a library ---------------------------------------------------------------
_.allow_abbrev  # argparse.ArgumentParser reads it (lab/cli.py: `--resum` must not mean `--resume`)
_.row_factory  # sqlite3.Connection reads it: rows come back as sqlite3.Row (lab/results/store.py)
_.text_factory  # sqlite3.Connection reads it: undecodable TEXT does not raise (lab/results/store.py)
_.missing_host_key  # paramiko.MissingHostKeyPolicy hook, called by paramiko (lab/transport/ssh_connect.py)
_.bulk_write  # adb-shell TcpTransport method, called by adb-shell (lab/transport/adb.py full writes)
_.get_next  # onnxruntime CalibrationDataReader hook, called by quantize_static (lab/convert/worker.py)
_.log_severity_level  # onnxruntime SessionOptions, read by InferenceSession (worker.py, ort_runner.py)
_.intra_op_num_threads  # onnxruntime SessionOptions, read by InferenceSession (lab/runners/ort_runner.py)
_.inter_op_num_threads  # onnxruntime SessionOptions, read by InferenceSession (lab/runners/ort_runner.py)
_.execution_mode  # onnxruntime SessionOptions, read by InferenceSession (lab/runners/ort_runner.py)
_.graph_optimization_level  # onnxruntime SessionOptions, read by InferenceSession (ort_runner.py)
_.capture_signals  # uvicorn.Server hook overridden by the serving runner (lab/runners/serving_runner.py)
_.should_exit  # uvicorn.Server flag its loop polls: the serving runner's stop (serving_runner.py)
_.server_version  # http.server handler attribute sent as the Server header (lab/runners/web_server.py)
_.translate_path  # http.server handler hook: URL -> file inside the site root (web_server.py)
_.log_message  # http.server handler hook: one stderr line per error (lab/runners/web_server.py)
_.do_POST  # http.server dispatches POST here: the page posts its result (lab/runners/web_server.py)
_.daemon_threads  # socketserver reads it: request threads never block exit (web_server.py)
_.frame  # signal handler signature (signum, frame), fixed by signal.signal (lab/runners/runner_core.py)
_.__module__  # ResultRow.__module__: pickle and repr read it (lab/core/records.py, make_dataclass)
# mlperf_loadgen TestSettings / LogSettings fields, read by lg.StartTestWithLogSettings (lab/serving/loadgen.py)
_.min_duration_ms  # LoadGen TestSettings: minimum run length
_.max_duration_ms  # LoadGen TestSettings: maximum run length
_.qsl_rng_seed  # LoadGen TestSettings: seeded, so a run can be repeated
_.sample_index_rng_seed  # LoadGen TestSettings: seeded, so a run can be repeated
_.schedule_rng_seed  # LoadGen TestSettings: seeded, so a run can be repeated
_.server_target_qps  # LoadGen TestSettings: the Server scenario's Poisson rate
_.server_target_latency_ns  # LoadGen TestSettings: the Server scenario's latency bound
_.server_target_latency_percentile  # LoadGen TestSettings: the percentile the bound applies to
_.single_stream_expected_latency_ns  # LoadGen TestSettings: SingleStream's expected latency
_.single_stream_target_latency_percentile  # LoadGen TestSettings: SingleStream's percentile
_.offline_expected_qps  # LoadGen TestSettings: Offline's expected throughput
_.min_query_count  # LoadGen TestSettings: the early-stopping query floor
_.max_query_count  # LoadGen TestSettings: the query cap
_.outdir  # LoadGen LogOutputSettings: where the summary and detail logs go (kept per job)
_.copy_summary_to_stdout  # LoadGen LogOutputSettings: off, the lab parses the summary file
_.enable_trace  # LoadGen LogSettings: off, the trace is large and unused
_.training  # paddle.nn.Layer flag its BatchNorm forward reads: batch statistics on (lab/models/datainit.py)

# -- record fields written whole to the store, JSON or a template ----------------------------------
# Measurement figures: every field in MEASUREMENT_FIGURES is a results-table column and a field of
# `lab results --format json/csv` (lab/core/records.py, lab/results/store.py).
_.std_ms  # Measurement figure (results column)
_.power_source  # Measurement figure (results column): which meter the power figures came from
_.temp_max_c  # Measurement figure (results column)
_.gpu_mem_mb  # Measurement figure (results column; also read by report.html.j2)
_.agree_reference  # Measurement figure (results column): what the outputs were checked against
_.throttle_onset_s  # Measurement figure (results column) of a sustained run
_.sustained_ratio  # Measurement figure (results column) of a sustained run
_.import_ms  # Measurement figure (results column): the runner's import of the runtime (issue 23)
# SustainedWindow fields: the store's `windows` table has one column per field (WINDOW_FIELDS).
_.clock_start  # SustainedWindow column: the window's start on the device's uptime clock
_.clock_end  # SustainedWindow column: the window's end on the device's uptime clock
_.cpu_mhz  # SustainedWindow column: CPU clock during the window
_.accel_mhz  # SustainedWindow column: accelerator clock during the window
_.analysis_version  # ModelAnalysis field: written by to_dict into meta.json, compared on load (analysis.py)
_.builder_version  # ModelMeta field: written to meta.json by ModelMeta.to_json (lab/models/artifact.py)
_.zoo_entry  # ModelMeta field: written to meta.json by ModelMeta.to_json (lab/models/artifact.py)
_.built_at  # ModelMeta field: written to meta.json by ModelMeta.to_json (lab/models/artifact.py)
_.npu_subgraphs  # OptReport field: asdict into the .nb's conversion record "partition" (convert/lite.py)
_.npu_ops  # OptReport field: asdict into the .nb's conversion record "partition" (convert/lite.py)
_.min_ns  # LoadGen result field: asdict into the serving job's provenance (lab/serving/loadgen.py)
_.p999_ms  # LoadGen result field: asdict into the serving job's provenance (lab/serving/loadgen.py)
_.queries  # LoadGen result field: asdict into the serving job's provenance (lab/serving/loadgen.py)
_.wall_s  # LoadGen result field: asdict into the serving job's provenance (lab/serving/loadgen.py)
_.cosine_min  # Agree field, read by report.html.j2 (framework comparison table)
_.generated_at  # report context field, read by report.html.j2
_.cold_cpu_ms  # report section field, read by report.html.j2 (CPU vs AIPU table)
_.cold_aipu_ms  # report section field, read by report.html.j2 (CPU vs AIPU table)
_.cost_per_million_usd  # serving section field, read by report.html.j2
_.cost_note  # serving section field, read by report.html.j2
_.queue_ms  # EndpointSplit / report Split field: written by asdict (lab/serving/stats.py), read by report.html.j2
_.decode_ms  # EndpointSplit / report Split field: written by asdict (lab/serving/stats.py), read by report.html.j2
_.encode_ms  # EndpointSplit / report Split field: written by asdict (lab/serving/stats.py), read by report.html.j2
_.server_ms  # EndpointSplit field: written by asdict into the run's split (lab/serving/stats.py)
_.other_ms  # report Split field, read by report.html.j2 (where a request's time goes)
_.outside_ms  # report Split field, read by report.html.j2 (where a request's time goes)
_.largest  # report Split field, read by report.html.j2 (where a request's time goes)
_.utilisation_note  # ModelMeasure field: vars() into `lab score --format json` "measured" (docs/scoring.md)
_.serving_qps  # ModelMeasure field: vars() into `lab score --format json` "measured" (docs/scoring.md)
# Chip catalog records: the typed form of a chips.yaml entry. load_catalog accepts only known keys and
# type-checks these; dropping the fields would drop the catalog's stated data while still accepting it.
_.desc  # Unit / VideoPath field: chips.yaml `cpu.desc`, `gpu.desc`, `video.decode/encode.desc`
_.foundry  # Chip field: chips.yaml `foundry` (which fab makes the chip)
_.sdk  # Chip field: chips.yaml `sdk` (the vendor's NPU toolchains)

# -- schema that existing files use ---------------------------------------------------------------
_.power_meter_csv  # devices.yaml key the inventory accepts: unknown keys are refused, so existing files need it
# TrialResult is the runtime contract's typed trial (docs/architecture.md, "Adding a runtime"); every
# runtime fills samples_ms, measurement() reads the raw runner document instead.
_.samples_ms  # TrialResult field: required by the contract, set by all runtimes (serving.py, paddle_js.py, ...)

# -- read by name (getattr over a table of field names) ---------------------------------------------
_.throughput_ips  # ModelMeasure field, read via the criteria table (decide/measures.py, profiles.py)
_.requests_per_usd  # ModelMeasure field, read via the criteria table (decide/measures.py, profiles.py)
_.runtime_version  # RunContext field, compared by name in comparability.differences
_.runner_version  # RunContext field, compared by name in comparability.differences
_.governor  # RunContext field, compared by name in comparability.differences
_.enable_memory_profile  # benchmark_bin RunSpec flag, turned into argv by name (runtimes/benchmark_bin.py)
_.enable_op_time_profile  # benchmark_bin RunSpec flag, turned into argv by name (runtimes/benchmark_bin.py)
_.input_data_path  # benchmark_bin RunSpec flag, turned into argv by name (runtimes/benchmark_bin.py)
_.output_data_path  # benchmark_bin RunSpec flag, turned into argv by name (runtimes/benchmark_bin.py)
_.reference_samples  # PageProtocol field: page_url puts every field in the page URL by name; runner.js reads it

# -- called from outside lab/ ------------------------------------------------------------------------
_.n_trials  # LatencyStats field: bench/frameworks.py writes it as "trials" in its result rows (docs/benchmarks.md)
_.bytes_sent  # PushResult field: bench/ssh_parallel.py and bench/ssh_push.py measure pushed bytes (benchmarks.md)
_.decode_embedded  # public API: reads a report's data block back (docs/report.md, named in every report.html)
_.SyntheticExecutor  # bench/ray_overhead.py measures the Ray engine with it (docs/benchmarks.md)
_.latency_s  # CheckResult field: the result of Transport.check(), the protocol's health check (DESIGN.md)
