"""Taking files in from a docked device: naming rules, recording times, copy to the spool."""
