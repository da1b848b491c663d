"""lockstep: promote several repositories' production branches together, gated on staging."""

__version__ = "0.1.0"
