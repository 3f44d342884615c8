"""The sans-I/O protocol core: pure functions and state machines.

Nothing in this package may import socket, asyncio, time, os, random, subprocess or pyroute2;
time and randomness are passed in by the caller. tests/unit/test_core_purity.py enforces it.
"""
