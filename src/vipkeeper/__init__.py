"""vipkeeper: VRRP high availability and LVS load balancing for Linux (keepalived.conf syntax)."""

__version__ = "0.1.0"
