"""The two asyncio drivers, side by side: `vrrp` runs the VRRP core, `health` the health checks.

Each owns its loop's clock and timers and carries out its core's orders; neither decides.
"""
