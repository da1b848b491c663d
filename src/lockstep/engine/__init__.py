"""The run: the gate (every step, top to bottom), reconcile plans, and what a command needs around them."""
