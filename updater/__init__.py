"""Keep containers run by systemd units on the digest their registry tag points to."""

__version__ = "0.1.0"
