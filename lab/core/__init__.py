"""The bottom floor: errors, typed records, bounded YAML/JSON readers and writers, text safety, output paths, signals, hashing, child processes, versions. Imports nothing else of lab."""
