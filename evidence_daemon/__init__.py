"""evidence-daemon: bit-exact archival of body-camera footage with a signed chain of custody."""

__version__ = "0.1.0"
