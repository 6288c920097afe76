"""The service layer: what the CLI, the web pages and the REST API ask and do.

Plain functions that take a session (or a session factory) and return plain data. A front
end (cli, web, api) calls these and the area packages' public entry points, never the
models directly for its own queries.

- `queries`: counts, thread lists and details, status;
- `engagement`: timelines, engagement figures, explanations, the links export.
"""
