"""One module or package per outside system: the engine, systemd, the state file, registries,
signatures, etcd, and the HTTP/1.1 they speak."""
