"""The REST API, `/api/v1` (issue #18): served by the web workspace's process
(`web.app.create_app` mounts `api.app.create_api`), calling `services/` with the same
visibility rules as the pages, authenticated by bearer tokens (`services.apitokens`)
instead of cookies, described by its own OpenAPI 3.1 schema, errors as RFC 9457 problem
details."""
