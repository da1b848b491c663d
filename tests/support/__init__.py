"""What every test, benchmark and the chaos harness share: one world per forge (real git
repositories, the fake GitHub), loopback staging servers, the Actions output parser."""
