"""Telemetry: the sampler trace maths (power, energy, thermal, figures), the device-side session, and external meter imports."""
