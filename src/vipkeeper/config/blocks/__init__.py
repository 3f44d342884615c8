"""Readers of keepalived.conf's blocks, one module a block kind, sharing one walker."""
