#!/bin/sh
# The image's entrypoint, and what tests/test_nginx_docker.py starts outside Docker: the
# server, configured by MINUTES_* environment variables (host, port, model store, jobs
# database...); arguments are passed on as `minutes serve` flags.
set -eu
exec minutes serve "$@"
