"""Benchmark: `updater check` and an idle `updater run` against Podman's `auto-update --dry-run`.

Run as root from the repository root, `python3 -m bench --help`; bench/README.md says what it
sets up, how it isolates Podman and how it measures.
"""
