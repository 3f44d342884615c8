"""Where vipkeeper looks by default: its configuration file and its control socket.

A module that imports nothing, so the command line can name these defaults without loading the
control socket's code (and asyncio with it) before it knows which command runs.
"""

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"
DEFAULT_SOCKET = "/run/vipkeeper/vipkeeper.sock"
