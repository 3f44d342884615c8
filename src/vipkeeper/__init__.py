"""vipkeeper: VRRP high availability and LVS load balancing for Linux, keepalived.conf compatible."""

__version__ = "0.1.0"
