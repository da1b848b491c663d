"""The GitHub forge: the REST API (refs, deployments, statuses, issues), external checks and dispatch."""
