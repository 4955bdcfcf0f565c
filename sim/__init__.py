"""The simulated world: ground truth, cell model, CV physics and firmware emulators on ptys."""
