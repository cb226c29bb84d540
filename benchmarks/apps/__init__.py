"""Apps the HTTP workloads (H1-H3) compare with the reference app in examples/sql_app."""
