"""hwlab-sim: simulated devices for the lab's farm tests and benchmarks, outside the product.

A plug-in runtime (`simulated`, entry point group `hwlab.runtimes`) whose runner replays a latency
distribution recorded from a real stored job, and a local multi-node Ray farm of such devices. Its
rows carry `source: simulated`; the lab's readers refuse to put them next to measured rows.
"""
