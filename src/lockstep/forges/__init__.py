"""Forge implementations behind one protocol (see :mod:`lockstep.forges.base`)."""
