"""Decisions from result records alone: chip scoring against the selection criteria, the CPU-or-AIPU advisor and its rules, trade-offs (break-even, Pareto), the frameworks comparison."""
