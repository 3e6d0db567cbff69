"""The offline test lab: real servers (sshd + Docker), a TLS registry, sample apps."""
