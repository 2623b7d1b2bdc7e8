"""Stand-ins for outside services that tests (and test mode) talk to over real HTTP."""
