"""Every write of billing. Each public function is one transaction and states its contract;
decisions come from billing.decisions, time from aerolith.clock."""
