"""Transports: one protocol (run / push / pull / forward / abort / check / close) over local, SSH and ADB."""
