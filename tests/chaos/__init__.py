"""Fault injection (chaos runs) and fuzzing of lockstep; see ``harness.py`` and ``docs/reliability.md``."""
