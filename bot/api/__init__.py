"""The JSON API for shop systems under /api/v1 (bearer token, OpenAPI document)."""
