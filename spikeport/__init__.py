"""spikeport: spiking networks from STBP training to Loihi-style integer execution."""

__version__ = "0.1.0"
