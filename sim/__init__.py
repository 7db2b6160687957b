"""Integer world: Loihi fixed-point formats and the bit-accurate simulator (numpy, nir; never train/ or Lava)."""
