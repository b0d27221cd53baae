"""The synthetic world and its servers: test and demo infrastructure (product code never imports it)."""
