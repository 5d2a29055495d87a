"""The spool daemon: `serve` (tickets in, the run engine, tickets filed), the spool folders and
their rules, the client side of its control files, and systemd notification.
"""
