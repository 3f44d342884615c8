"""Scripts the harness copies into the client container and runs there with its python3.

They use only the standard library and scapy, and never import the harness.
"""
