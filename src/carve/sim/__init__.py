"""Synthetic robot-manipulation episodes from pybullet (Franka Panda), written as LeRobot datasets."""
