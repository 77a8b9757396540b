"""The process: config, app factory, wiring, CLI, health, metrics, logs, database and Redis
wiring, order intake, importer, demo. Its top may import everything; its leaves (tasks,
metrics, logs, request_log, database, validation) import nothing of ours but models."""
