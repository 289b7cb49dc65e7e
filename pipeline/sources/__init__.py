"""Episode readers: LeRobot v2.1/v3.0, plain MP4+array folders, robomimic/ALOHA HDF5."""
