"""`aerolith`, the customer command line: a thin client of the REST API (/api/v1/)."""
