"""Telemetry: the sampler trace maths (power, energy, thermal, figures), the device-side session,
cooldown between jobs, and external meter imports."""
