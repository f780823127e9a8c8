"""Capture BTSE sessions losslessly, replay them through the engine, export book series."""
